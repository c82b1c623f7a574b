"""The explorer as a user meets it: a figure under any backend (PNG bytes in an image widget), updates checked before
they are stored, chat-message prompts, quiet outside Jupyter, readable text, and opening a datagen output file."""
import io, json, re, time
from pathlib import Path

import pytest
import torch

ipywidgets = pytest.importorskip('ipywidgets')
import matplotlib
import matplotlib.pyplot as plt

from mlprep.data.tiny import demo_tokenizer, tiny_model
from mlprep.sampling.explorer import Explorer, explore_position, position_info, token_label

PNG = b'\x89PNG\r\n\x1a\n'
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def pair():
    torch.set_num_threads(1)
    tok = demo_tokenizer()
    return tiny_model('llama', tok, seed=0), tiny_model('llama', tok, seed=1), tok


def explorer(pair, prompts=('What is 2+3?', 'Find the remainder of 17 divided by 5.'), **kw):
    theta, target, tok = pair
    kw.setdefault('max_new_tokens', 6)
    return Explorer(theta, target, tok, list(prompts), **kw)


def png_pixels(data: bytes):
    import matplotlib.image as mpimg
    return mpimg.imread(io.BytesIO(data), format='png')


def test_figure_is_a_png_in_an_image_widget_under_agg(pair):
    "Under Agg (as the scripts set it), the figure is real pixels in an ipywidgets.Image, and moves change them."
    assert matplotlib.get_backend().lower() == 'agg'
    figs_before = plt.get_fignums()
    ex = explorer(pair)
    box = ex.widget()
    image = ex._ui['figure']
    assert isinstance(image, ipywidgets.Image) and image in box.children
    assert bytes(image.value).startswith(PNG)
    px = png_pixels(bytes(image.value))
    assert px.shape[0] > 150 and px.shape[1] > 500
    assert len(torch.unique(torch.as_tensor(px[..., :3]).reshape(-1, 3), dim=0)) > 20   # drawn, not blank
    first = bytes(image.value)
    ex._ui['alpha'].value = 0.9
    assert bytes(image.value) != first and bytes(image.value).startswith(PNG)
    ex._ui['position'].value = 3                                  # new curves, same figure object
    fig = ex._fig
    ex._ui['position'].value = 1
    assert ex._fig is fig and len(fig.axes) == 3                  # bars, curves and one ESS twin: reused, not stacked
    assert plt.get_fignums() == figs_before                       # no pyplot figures left behind
    assert ex.image().data == ex.png()


def test_outside_jupyter_updates_print_nothing(pair, capsys):
    "Building the widget, moving controls and calling update() write nothing to stdout/stderr (no Figure(...), no escapes)."
    ex = explorer(pair)
    ex.widget()
    ex._ui['alpha'].value = 0.2
    ex._ui['temperature'].value = 0.4
    ex._ui['position'].value = 2
    ex._ui['prompt'].value = 1
    ex._ui['ess_button'].click()
    ex.update(alpha=0.7, position=0)
    out, err = capsys.readouterr()
    assert out == '' and 'Figure(' not in err and '\x1b' not in err, (out, err)


@pytest.mark.parametrize('change, message', [
    (dict(alpha=1.5), 'alpha=1.5 must be in [0, 1]'),
    (dict(alpha=-0.1), 'alpha=-0.1 must be in [0, 1]'),
    (dict(temperature=-1), 'temperature=-1 must be >= 0'),
    (dict(prompt_index=100), 'prompt_index=100 is out of range: there are 2 prompts (0 to 1)'),
    (dict(prompt_index=-1), 'prompt_index=-1 is out of range'),
    (dict(position='3'), "position='3' must be an integer"),
    (dict(top_p=0), 'top_p=0'),
    (dict(top_k=-2), 'top_k=-2'),
    (dict(alpha=0.2, temperature=-1), 'temperature=-1'),         # nothing of a rejected call is stored, not even α
])
def test_update_checks_before_storing(pair, change, message):
    ex = explorer(pair)
    ex.widget()
    good = ex.update(alpha=0.4, temperature=0.8, position=1)
    state = (ex.params, ex.prompt_index, ex.position, ex._ui['alpha'].value, ex._ui['temperature'].value, ex._ui['position'].value)
    figure = bytes(ex._ui['figure'].value)
    with pytest.raises(ValueError, match=None) as e: ex.update(**change)
    assert message in str(e.value)
    assert (ex.params, ex.prompt_index, ex.position, ex._ui['alpha'].value, ex._ui['temperature'].value,
            ex._ui['position'].value) == state
    assert ex.info == good and bytes(ex._ui['figure'].value) == figure
    assert ex.update(alpha=0.6)['alpha'] == 0.6                    # the next update works


def test_unknown_setting_is_named(pair):
    ex = explorer(pair)
    with pytest.raises(TypeError, match="unknown setting 'beta'"): ex.update(beta=1)


def test_direct_update_moves_the_controls(pair):
    ex = explorer(pair)
    ex.widget()
    ex.update(alpha=0.25, temperature=1.5, prompt_index=1, position=99)
    n = len(ex.rows(1)['tokens'])
    ui = ex._ui
    assert (ui['alpha'].value, ui['temperature'].value, ui['prompt'].value) == (0.25, 1.5, 1)
    assert (ui['position'].max, ui['position'].value) == (n - 1, n - 1) == (ex.position, ex.position)
    ui['kl_button'].click()
    assert ui['alpha'].value == pytest.approx(ex.info['alpha_methods']['kl_symmetry'], abs=1e-9)


def test_chat_message_prompts(pair):
    "Prompts given as chat messages: the target gets the chat template, π_θ their contents (as in datagen)."
    theta, target, tok = pair
    chat = [{'role': 'user', 'content': 'What is 2+3?'}]
    ex = explorer(pair, prompts=[chat, 'What is 2+3?'], continuations=['It is 5.', 'It is 5.'])
    box = ex.widget()
    assert ex._ui['prompt'].options[0][0] == '0: What is 2+3?'
    a, b = ex.rows(0), ex.rows(1)
    assert a['prompt'] == b['prompt'] and torch.equal(a['theta'], b['theta']) and torch.equal(a['target'], b['target'])
    ex2 = explorer(pair, prompts=[chat], chat_template_for_theta=True, continuations=['5'])
    assert ex2.rows(0)['prompt'].startswith('<|im_start|>user\nWhat is 2+3?')
    assert ex.update(prompt_index=0, position=1)['position'] == 1


def test_text_separates_prompt_and_shows_newline(pair):
    ex = explorer(pair, prompts=['What is 2+3?'], continuations=['2 + 3 = 5.\nSo 5.'])
    ex.widget()
    tokens = ex.rows(0)['tokens']
    nl = next(p for p, t in enumerate(tokens) if ex.tokenizer.decode([t]) == '\n')
    ex.update(position=nl)
    text = ex._ui['text'].value
    prompt_box, continuation = text.split('</div>', 1)
    assert 'What is 2+3?' in prompt_box and '<small>prompt</small>' in prompt_box and 'What is' not in continuation
    assert 'continuation' in continuation
    highlighted = continuation.split('<b ', 1)[1].split('</b>')[0]
    assert '⏎' in highlighted
    ex.update(position=0)
    assert '⏎' not in ex._ui['text'].value.split('<b ', 1)[1]
    assert token_label(ex.tokenizer, tokens[nl]) == '⏎'


def test_slider_labels_are_not_cut(pair):
    ex = explorer(pair)
    ex.widget()
    for k in ('position', 'alpha', 'temperature'):
        assert ex._ui[k].style.description_width == 'initial', k


def test_chosen_token_outside_the_top_is_drawn():
    tok = demo_tokenizer()
    g = torch.Generator().manual_seed(1)
    a, b = 3 * torch.randn(len(tok), generator=g), 3 * torch.randn(len(tok), generator=g)
    rare = int((a + b).argmin())
    fig, info = explore_position(a, b, 0.5, tokenizer=tok, top=8, chosen=rare)
    c = info['chosen']
    assert c['in_top'] is False and c['id'] == rare
    assert c['q'] == pytest.approx(torch.softmax(0.5 * torch.log_softmax(a, -1) + 0.5 * torch.log_softmax(b, -1), -1)[rare].item(), rel=1e-4)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert len(labels) == 9 and labels[-1].startswith('★') and sum(l.startswith('★') for l in labels) == 1
    assert len(fig.axes[0].patches) == 9 * 3
    # a chosen token among the top is starred in place, not added
    top_id = info['top_tokens'][0]['id']
    fig2, info2 = explore_position(a, b, 0.5, tokenizer=tok, top=8, chosen=top_id)
    assert info2['chosen']['in_top'] and len(fig2.axes[0].get_xticklabels()) == 8
    plt.close('all')
    assert position_info(a, b, 0.5, top=8, chosen=rare)['chosen'] == {**c, 'token': str(rare)}


@pytest.mark.slow
def test_open_a_datagen_output_on_the_trained_pair(tmp_path, capsys):
    "`mlprep datagen` on the tiny pair, then Explorer.from_output on its file; prints a bench line (no timing assertion)."
    from mlprep.cli import main
    torch.set_num_threads(1)
    out = tmp_path / 'gen.jsonl'
    assert main(['datagen', '--model_theta', 'tiny:theta', '--model_t', 'tiny:target', '--dataset', 'demo:deepscaler',
                 '--dataset_adapter', 'deepscaler', '--output', str(out), '--num_samples', '3', '--max_new_tokens', '24',
                 '--temperature', '0.9', '--device', 'cpu']) == 0
    capsys.readouterr()
    ex = Explorer.from_output(out, n=2)
    records = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(ex.prompts) == 2 and ex.prompts[0] == records[0]['messages'][:-1]
    assert ex.tokenizer.decode(ex.rows(0)['tokens']) == records[0]['messages'][-1]['content']
    assert (ex.chat_template_for_theta, ex.chat_template_for_target, ex.temperature) == (False, True, 0.9)
    ex.widget()
    assert bytes(ex._ui['figure'].value).startswith(PNG)
    moves = dict(alpha=lambda j: setattr(ex._ui['alpha'], 'value', 0.1 + 0.1 * j),
                 position=lambda j: setattr(ex._ui['position'], 'value', 1 + j))
    times = {}
    for name, move in moves.items():
        ts = []
        for j in range(5):
            t = time.perf_counter(); move(j); ts.append(time.perf_counter() - t)
        times[name] = sorted(ts)[2]
    rows, p = ex.rows(0), ex.position
    t = time.perf_counter()
    fig, _ = explore_position(rows['theta'][p], rows['target'][p], 0.5, ex.tokenizer, chosen=rows['tokens'][p])
    fig.savefig(io.BytesIO(), format='png'); plt.close(fig)
    fresh = time.perf_counter() - t
    # the README's snippet runs as written on this file
    snippet = re.search(r"```python\n(from mlprep.sampling.explorer import Explorer\n.*?)```", (ROOT / 'README.md').read_text(), re.S).group(1)
    exec(snippet.replace('outputs/gen/data.jsonl', str(out)), {})
    with capsys.disabled():
        print(f"\nbench explorer move (tiny pair, median of 5): alpha {times['alpha']*1e3:.0f} ms, position "
              f"{times['position']*1e3:.0f} ms; a fresh figure + PNG at default dpi {fresh*1e3:.0f} ms "
              f"(x{fresh / times['alpha']:.1f} of an α move)")


def test_readme_and_guide_show_how_to_open_it():
    "Both show Explorer.from_output on a datagen output file; the guide shows a real figure saved under docs/assets/."
    readme, guide = (ROOT / 'README.md').read_text(), (ROOT / 'docs/guides/04_data-generation.md').read_text()
    for text in (readme, guide): assert re.search(r"Explorer\.from_output\('outputs/gen/[\w.]+\.jsonl'", text)
    section = guide.split('## Exploring one token at a time', 1)[1].split('\n## ', 1)[0]
    image = re.search(r'!\[[^\]]+\]\(\.\./assets/([\w.-]+\.png)\)', section).group(1)
    data = (ROOT / 'docs/assets' / image).read_bytes()
    assert data.startswith(PNG) and png_pixels(data).shape[1] >= 1000
