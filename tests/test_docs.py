"""The pages say what the code does: every setting README names exists in config.py, every name of
README's code map exists in the code, and every link of the Markdown pages leads to a file (and a
heading) that exists."""
import ast
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


def top_level_names(path):
    """The functions, classes and assigned names at the top of a Python file."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        for target in getattr(node, 'targets', []) + [getattr(node, 'target', None)]:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)} if target else set()
    return names


def module_file(name):
    """The file of a module README names as `name.attr`: a script at the top, or one of glcic/."""
    for path in (f'{name}.py', f'glcic/{name}.py'):
        if os.path.exists(os.path.join(ROOT, path)):
            return path
    return None


def test_every_name_of_the_code_map_exists():
    """README's 'The paper in the code': `module.name`, files, `script --flag`, and bare names of the
    module named before them in the same cell (or settings of config.py)."""
    section = read('README.md').split('## The paper in the code', 1)[1].split('\n## ', 1)[0]
    rows = [line.split('|')[2] for line in section.splitlines() if line.startswith('| ') and '---' not in line]
    assert len(rows) >= 8, 'the code map has fewer rows than the paper has parts: is the pattern still right?'
    missing = []
    for cell in rows[1:]:  # the first row is the header
        current = None
        for name in re.findall(r'`([^`]+)`', cell):
            if ' ' in name:  # a command: the script and its option
                script, flag = name.split()[:2]
                ok = os.path.exists(os.path.join(ROOT, script)) and f"'{flag}'" in read(script)
            elif name.endswith('.py'):
                current, ok = name, os.path.exists(os.path.join(ROOT, name))
            elif '.' in name:
                module, attr = name.split('.', 1)
                current = module_file(module)
                ok = current is not None and attr in top_level_names(os.path.join(ROOT, current))
            else:
                ok = hasattr(config, name) or (current is not None and name in top_level_names(
                    os.path.join(ROOT, current)))
            if not ok:
                missing.append(name)
    assert not missing, f'README.md\'s code map names what the code does not have: {missing}'


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
