"""The shipped model's quality goal, from test.py's tables on the held-out faces of each set.

    python experiments/shipped_goal.py utk=experiments/results/faces128/utk-heldout.json \
        celeba=experiments/results/faces128/celeba-heldout.json --out experiments/results/faces128/goal.md

Each file is a test.py --model shipped metrics.json. The goal (the issue's table): hole PSNR above
OpenCV Telea's by GOAL_NETWORK dB for the network alone and GOAL_BLENDED dB with Poisson blending,
and a realism number below Telea's (lower is more real).
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from glcic import atomic, cli, errors  # noqa: E402

MODEL = 'shipped model'
GOAL_NETWORK = {'utk': 2.0, 'celeba': 1.0}  # dB above Telea, the network alone
GOAL_BLENDED = 3.0  # dB above Telea, with Poisson blending, on both


def rows_of(path):
    with open(path) as f:
        report = json.load(f)
    rows = {row['method']: row for row in report['rows']}
    needed = ('OpenCV Telea', MODEL, f'{MODEL} + blending')
    if any(name not in rows for name in needed) or 'realism' not in rows['OpenCV Telea']:
        raise errors.UserError(f'{path} is not a table of test.py --model shipped with the realism column '
                               f'(it needs {", ".join(needed)} and at least 200 images)')
    return report, rows


def table(sets):
    """sets: {name: metrics.json path} -> (markdown, met: every goal met)."""
    lines = ['| held-out faces | network alone − Telea (goal) | + Poisson blending − Telea (goal) '
             '| realism: network, + blending, Telea (goal: below Telea) |', '|---|---:|---:|---|']
    met = True
    for name, path in sets.items():
        report, rows = rows_of(path)
        telea, alone, blended = (rows[m] for m in ('OpenCV Telea', MODEL, f'{MODEL} + blending'))
        need = GOAL_NETWORK.get(name, GOAL_NETWORK['celeba'])
        gains = alone['hole_psnr'] - telea['hole_psnr'], blended['hole_psnr'] - telea['hole_psnr']
        real = alone['realism'] < telea['realism'] and blended['realism'] < telea['realism']
        marks = ['met' if gains[0] >= need else 'not met', 'met' if gains[1] >= GOAL_BLENDED else 'not met',
                 'met' if real else 'not met']
        met = met and marks == ['met'] * 3
        lines.append(f'| {name} ({report["images"]:,}) | {gains[0]:+.2f} dB ({need:g}: {marks[0]}) '
                     f'| {gains[1]:+.2f} dB ({GOAL_BLENDED:g}: {marks[1]}) '
                     f'| {alone["realism"]:.3f}, {blended["realism"]:.3f}, {telea["realism"]:.3f} ({marks[2]}) |')
    return '\n'.join(lines) + '\n', met


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('sets', nargs='+', metavar='NAME=METRICS_JSON')
    parser.add_argument('--out', help='write the table here too (markdown)')
    args = parser.parse_args(argv)
    sets = {}
    for value in args.sets:
        name, sep, path = value.partition('=')
        if not sep or not os.path.exists(path):
            raise errors.UserError(f'{value!r}: write NAME=PATH of a test.py metrics.json that exists')
        sets[name] = path
    text, met = table(sets)
    if args.out:
        atomic.write_text(args.out, text)
    print(text + ('every goal met' if met else 'not every goal met'))
    return 0


if __name__ == '__main__':
    cli.run(main)
