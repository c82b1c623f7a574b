"""Processing throughput: `process_dataset` (chunked, batch-encoded, resumable) vs a per-line tokenize-and-append loop
like the original `OptimizedDataProcessor`, on the same generated text; and the peak memory of `process_dataset` for
two input sizes (it should stay flat). Each measurement runs in its own process so that peak RSS is its own.

    python bench/process.py [--mb 20] [--num_proc 2]

Last line: `process_vs_loop=Z` (target Z >= 5)."""
import argparse, json, os, random, resource, subprocess, sys, tempfile, time
from pathlib import Path

CHILD = r'''
import json, resource, sys, time
import numpy as np
kind, src, out, num_proc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
from mlprep.mateconv.tokenizer import demo_mateconv_tokenizer, resolve_tokenizer
tok = demo_mateconv_tokenizer()
t0 = time.perf_counter()
if kind == 'process':
    from mlprep.mateconv.process import process_dataset
    process_dataset(src, out, chunk_size=20000, num_proc=num_proc, resume=False)
else:                                   # the original: one line at a time, every id kept in a Python list
    ids = []
    with open(src, encoding='utf-8') as f:
        for line in f:
            text = json.loads(line)['text']
            if len(text) > 512: continue
            ids += tok(f'{tok.bos_token}{text}{tok.eos_token}').data['input_ids']
    np.array(ids, dtype=np.uint16).tofile(out)
dt = time.perf_counter() - t0
print(json.dumps(dict(seconds=dt, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
'''

def make_corpus(path: Path, mb: float, seed: int = 0):
    "Generated text: demo documents with their sentences shuffled and numbers changed, until `mb` MB."
    from mlprep.data.resolve import resolve_dataset
    docs = [json.loads(l)['text'] for l in open(resolve_dataset('demo:text'))]
    rng, size = random.Random(seed), 0
    with open(path, 'w', encoding='utf-8') as f:
        while size < mb * 1e6:
            parts = rng.choice(docs).split('. ')
            rng.shuffle(parts)
            t = '. '.join(parts).replace('3', str(rng.randint(0, 99)))
            line = json.dumps({'text': t}, ensure_ascii=False) + '\n'
            f.write(line); size += len(line.encode())

def child(kind, src, out, num_proc):
    env = dict(os.environ, OMP_NUM_THREADS='1', MLPREP_PROGRESS='0', TOKENIZERS_PARALLELISM='false')
    r = subprocess.run([sys.executable, '-c', CHILD, kind, str(src), str(out), str(num_proc)], capture_output=True, text=True, env=env)
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--mb', type=float, default=20); ap.add_argument('--num_proc', type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        make_corpus(d / 'a.jsonl', a.mb); make_corpus(d / 'b.jsonl', 2 * a.mb, seed=1)
        mb = (d / 'a.jsonl').stat().st_size / 1e6
        loop = child('loop', d / 'a.jsonl', d / 'loop.bin', 1)
        proc = child('process', d / 'a.jsonl', d / 'p.bin', a.num_proc)
        big = child('process', d / 'b.jsonl', d / 'pb.bin', a.num_proc)
        print(f'per-line loop:   {mb / loop["seconds"]:6.2f} MB/s, peak {loop["peak_mb"]:.0f} MB ({mb:.0f} MB input)')
        print(f'process_dataset: {mb / proc["seconds"]:6.2f} MB/s, peak {proc["peak_mb"]:.0f} MB ({mb:.0f} MB input, num_proc={a.num_proc})')
        print(f'process_dataset: {2 * mb / big["seconds"]:6.2f} MB/s, peak {big["peak_mb"]:.0f} MB ({2 * mb:.0f} MB input): memory flat as the input doubles')
        same = (d / 'loop.bin').read_bytes() == (d / 'p.bin').read_bytes()
        print(f'same tokens as the loop: {same}')
        print(f'process_vs_loop={loop["seconds"] / proc["seconds"]:.2f}')
