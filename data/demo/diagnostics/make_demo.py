"""Write the demo diagnostics: `mlprep datagen` on 50 demo DeepScaleR prompts with the tiny trained pair, once per α method.

    python data/demo/diagnostics/make_demo.py [METHOD ...]   # from the repository root; a few minutes per method on a CPU

Each method writes METHOD.jsonl (the generated data) and METHOD.diagnostics.jsonl here.
Existing files of a method are replaced (datagen would otherwise resume them).
"""
import sys
from pathlib import Path

from mlprep.sampling.datagen import DatagenConfig, generate_dataset
from mlprep.sampling.mixture import ALPHA_METHODS

OUT = Path(__file__).resolve().parent

def main(methods):
    for method in methods:
        for f in OUT.glob(f'{method}.*json*'): f.unlink()
        cfg = DatagenConfig(model_theta='tiny:theta', model_t='tiny:target', dataset='demo:deepscaler', dataset_adapter='deepscaler',
                            alpha_method=method, num_samples=50, batch_size=10, max_new_tokens=64, temperature=1.0, seed=42,
                            save_diagnostics=True, output=str(OUT/f'{method}.jsonl'), device='cpu', dtype='float32')
        summary = generate_dataset(cfg)
        (OUT/f'{method}.summary.json').unlink()  # timings and absolute paths: not worth shipping
        print(method, summary['generated'], 'samples', summary['tokens'], 'tokens')

if __name__ == '__main__': main(sys.argv[1:] or ALPHA_METHODS)
