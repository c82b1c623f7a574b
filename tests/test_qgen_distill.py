"""Teacher distillation against a real OpenAI-compatible server: `transformers serve` on loopback serving the tiny
model (started and stopped by pid), a fault-injecting proxy in front of it, and a killed run that resumes."""
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest

from mlprep.qgen.common import resolve_qgen_model
from mlprep.qgen.teacher import FaultProxy, Teacher, TeacherError, load_exchanges, scripted_reply, serve_teacher
from mlprep.qgen.distill import QgenDistillConfig, train_distill


@pytest.fixture(scope='module')
def server():
    model = resolve_qgen_model('tiny:qwen3')
    with serve_teacher(model) as url: yield url, model


def judge_only(req):
    "Scripted JSON for evaluate / variations (a tiny model cannot write JSON); the real server's text for improve."
    return None if req['messages'][0]['content'].startswith('Improve this') else scripted_reply(req)


@pytest.mark.slow
def test_teacher_survives_429_500_timeout_and_broken_json(server, tmp_path):
    url, model = server
    with FaultProxy(upstream=url, faults=['429', '500', 'timeout', 'badjson'], reply=judge_only, stall=5.0) as px:
        t = Teacher(px.url, model, log_path=tmp_path / 'ex.jsonl', timeout=3.0, max_retries=4, max_tokens=24)
        ev = t.evaluate('Find all primes p such that p + 2 and p + 4 are both prime.')
        assert ev is not None and set(ev['scores']) == {'rigor', 'difficulty', 'innovation', 'clarity', 'educational_value'}
        assert [s['fault'] for s in px.seen[:5]] == ['429', '500', 'timeout', 'badjson', None]
        assert t.stats['bad_json'] == 1
        improved = t.improve('Find x if 2x + 3 = 7.', ev['feedback'])       # real text from the served tiny model
        assert improved and isinstance(improved, str)
        assert px.seen[-1]['request']['model'] == model
        t.close()
    recs = [json.loads(l) for l in open(tmp_path / 'ex.jsonl')]
    assert [r['kind'] for r in recs] == ['evaluate', 'evaluate', 'improve'] and all(r['status'] == 'ok' for r in recs)
    assert not any('api_key' in json.dumps(r).lower() for r in recs)


@pytest.mark.slow
def test_unknown_teacher_model_fails_before_work(server, tmp_path):
    url, _ = server
    with pytest.raises(TeacherError, match="does not serve model 'no/such-model'"): Teacher(url, 'no/such-model')
    cfg = QgenDistillConfig(teacher_base_url=url, teacher_model='no/such-model', teacher_serve='', num_steps=2, device='cpu',
                            output_dir=str(tmp_path / 'run'))
    with pytest.raises(TeacherError): train_distill(cfg)
    assert not (tmp_path / 'run' / 'pairs.jsonl').exists()


CFG = dict(teacher_serve='', num_steps=8, student_max_new_tokens=24, max_steps=2, gradient_accumulation_steps=2, lora_r=8, lora_alpha=16,
           device='cpu', teacher_timeout=30, teacher_max_tokens=24)
RUN = textwrap.dedent(f"""
    import sys
    from mlprep.qgen.distill import QgenDistillConfig, train_distill
    url, model, out = sys.argv[1:4]
    train_distill(QgenDistillConfig(**{CFG!r}, teacher_base_url=url, teacher_model=model, output_dir=out))
""")


@pytest.mark.slow
def test_killed_distill_run_resumes_without_asking_twice(server, tmp_path):
    url, model = server
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    with FaultProxy(upstream=url, reply=scripted_reply) as px:
        ref = tmp_path / 'ref'
        train_distill(QgenDistillConfig(**{**CFG, 'teacher_base_url': px.url, 'teacher_model': model, 'output_dir': str(ref)}))
        n_ref = px.answered()
        run = tmp_path / 'run'
        p = subprocess.Popen([sys.executable, '-c', RUN, px.url, model, str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ex = run / 'exchanges.jsonl'
        t0 = time.time()
        while not (ex.exists() and len(ex.read_text().splitlines()) >= 7):
            assert p.poll() is None and time.time() - t0 < 120, 'the run ended before it could be killed'
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL); p.wait()
        asked_before_kill = px.answered() - n_ref
        done_before = len((run / 'pairs.jsonl').read_text().splitlines())
        assert 0 < done_before < 8 and not (run / 'adapter').exists()
        subprocess.run([sys.executable, '-c', RUN, px.url, model, str(run)], check=True, env=env, capture_output=True)
        asked_total = px.answered() - n_ref
    ok = [json.loads(l) for l in open(ex) if json.loads(l)['status'] == 'ok']
    keys = [r['key'] for r in ok]
    assert len(keys) == len(set(keys)), 'an answered request was asked again'
    assert asked_total <= len(keys) + 1                    # at most the one request in flight at the kill went unrecorded
    assert asked_total == n_ref or asked_total == n_ref + 1
    pairs = lambda d: [{k: r[k] for k in ('step', 'question', 'evaluation', 'improved', 'variations')} for r in map(json.loads, open(d / 'pairs.jsonl'))]
    assert pairs(run) == pairs(ref)                         # the same result as the run that was never killed
    assert (run / 'adapter' / 'adapter_model.safetensors').exists()
    summary = json.loads((run / 'summary.json').read_text())
    print(f'killed after {asked_before_kill} teacher requests ({done_before} steps); resumed: {asked_total} requests in all '
          f'vs {n_ref} for the uninterrupted run; {summary["pairs"]} pairs')
