"""Reward scoring speed: `RewardCalculator` (incremental TF-IDF) vs the original's refit-per-question reference.

Groups of 8 questions are scored against a history of 1000, the way GRPO calls the calculator: each question against
the history as it was before its group, then the group joins the history (oldest dropped). The reference refits a
`TfidfVectorizer` on history + question for every question (novelty) and on the group for every question (diversity),
as the original does. The two must give the same scores (asserted, to 1e-9); the last line is the speed ratio.

    python bench/rewards.py [--groups 20] [--history 1000]
"""
import argparse, time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from mlprep.qgen.rewards import RewardCalculator, question_text, is_question, synthetic_questions


def refit_max_similarity(question, history):
    if not history: return 0.0
    X = TfidfVectorizer().fit_transform(list(history) + [question])
    return float(np.clip(cosine_similarity(X[-1], X[:-1]).max(), 0, 1))


def refit_diversity(question, group):
    others = list(group)
    if question in others: others.remove(question)
    if not others: return 1.0
    X = TfidfVectorizer().fit_transform([question] + others)
    return float(np.clip(1 - cosine_similarity(X[0], X[1:]).mean(), 0, 1))


def reference_group(calc, history, group):
    "The original's way: refit for every question; the same keyword dimensions and combination rule."
    out = []
    for q in group:
        q = question_text(q)
        sim = refit_max_similarity(q, history)
        d = dict(difficulty=calc.calculate_difficulty(q), novelty=1 - sim, rigor=calc.calculate_rigor(q),
                 diversity=refit_diversity(q, group), similarity=sim)
        r = calc.combine(d)
        out.append(r if is_question(q) else r * calc.no_question_factor)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--groups', type=int, default=20)
    ap.add_argument('--history', type=int, default=1000)
    a = ap.parse_args()
    start = synthetic_questions(a.history, seed=1)
    groups = [synthetic_questions(8, seed=100 + i) for i in range(a.groups)]
    groups[0][3] = start[-1]                                   # a duplicate of history: the novelty penalty applies
    calc = RewardCalculator(history_size=a.history, log_every=0)
    calc.add_to_history(start)
    calc(prompts=['warm'] * 8, completions=synthetic_questions(8, seed=99))     # warm-up (the first index build)
    ref_hist = list(calc.history)
    ours, ref, t_ours, t_ref = [], [], 0.0, 0.0
    for g in groups:
        t0 = time.perf_counter(); ours += calc(prompts=['p'] * 8, completions=g); t_ours += time.perf_counter() - t0
        t0 = time.perf_counter(); ref += reference_group(calc, ref_hist, g); t_ref += time.perf_counter() - t0
        ref_hist = (ref_hist + g)[-a.history:]
    diff = float(np.max(np.abs(np.array(ours) - np.array(ref))))
    assert diff <= 1e-9, f'scores differ by {diff}'
    n = 8 * a.groups
    print(f'{n} questions in groups of 8 against a history of {a.history}; max score difference {diff:.1e}')
    print(f'calculator: {t_ours / a.groups * 1000:8.2f} ms per group of 8')
    print(f'refit:      {t_ref / a.groups * 1000:8.2f} ms per group of 8')
    print(f'rewards_vs_refit={t_ref / t_ours:.1f}')


if __name__ == '__main__':
    main()
