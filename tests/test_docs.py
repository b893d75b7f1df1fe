"""The pages say what the code does: every setting README names exists in config.py, and every
link of the Markdown pages leads to a file (and a heading) that exists."""
import glob
import os
import re

import pytest

import config
from conftest import ROOT

PAGES = sorted(['README.md', 'QUALITY.md', 'BENCHMARKS.md', 'experiments/README.md']
               + [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md'))])
ENVIRONMENT = {'TF_CONFIG', 'TF_ENABLE_ONEDNN_OPTS', 'TF_CPP_MIN_LOG_LEVEL', 'ONEDNN_MAX_CPU_ISA'}
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def read(page):
    with open(os.path.join(ROOT, page), encoding='utf-8') as f:
        return f.read()


def anchors(page):
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in re.findall(r'^#+ (.+)$', read(page), re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        found.add(slug)
    return found


def test_every_setting_readme_names_is_in_config_py():
    readme = read('README.md')
    named = set(re.findall(r'`([A-Z][A-Z0-9_]+)`', readme)) | set(re.findall(r'--([A-Z][A-Z0-9_]+)=', readme))
    named |= {key for cell in re.findall(r'^\| `([^|]+)` \|', readme, re.M)
              for key in re.findall(r'[A-Z][A-Z0-9_]+', cell)}
    # The paper's tables are network.py's names, not settings; --KEY=value is the pattern itself.
    tables = set(re.findall(r'^([A-Z][A-Z0-9_]+) = ', read('network.py'), re.M))
    missing = sorted(key for key in named - ENVIRONMENT - tables - {'KEY'} if not hasattr(config, key))
    assert named & set(config.as_dict()), 'no setting found: is the pattern still right?'
    assert not missing, f'README.md names settings that config.py does not have: {missing}'


@pytest.mark.parametrize('page', PAGES)
def test_every_link_leads_somewhere(page):
    broken = []
    for target in LINK.findall(read(page)):
        if re.match(r'[a-z]+:', target):  # http(s), mailto: not checked here
            continue
        path, _, anchor = target.partition('#')
        file = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, file)):
            broken.append(f'{target} (no {file})')
        elif anchor and file.endswith('.md') and anchor not in anchors(file):
            broken.append(f'{target} (no heading #{anchor} in {file})')
    assert not broken, f'{page}: ' + '; '.join(broken)
