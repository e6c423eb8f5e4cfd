"""Node types of packs read statically from NODE_CLASS_MAPPINGS, never by importing the pack."""

from __future__ import annotations

from pathlib import Path

from comfywatchman.comfy import custom_nodes
from comfywatchman.comfy.custom_nodes import list_packs


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_list_packs_reads_literals_updates_and_submodule_mappings(tmp_path: Path) -> None:
    custom = tmp_path / "custom_nodes"
    write(custom / "Literal" / "__init__.py", 'NODE_CLASS_MAPPINGS = {"A": object, "B": object}\n')
    write(
        custom / "Updating" / "__init__.py",
        "from .nodes import NODE_CLASS_MAPPINGS as N\nNODE_CLASS_MAPPINGS = {**N}\n"
        "NODE_CLASS_MAPPINGS.update({'C': 1})\nif True:\n    NODE_CLASS_MAPPINGS['D'] = 2\n",
    )
    write(custom / "Updating" / "nodes.py", "class X: pass\nNODE_CLASS_MAPPINGS = dict(E=X)\n")
    write(custom / "Updating" / "helpers.py", "import os\n")
    write(custom / "Broken" / "__init__.py", "NODE_CLASS_MAPPINGS = {\n")
    write(custom / "Off.disabled" / "__init__.py", 'NODE_CLASS_MAPPINGS = {"F": 1}\n')
    write(custom / "single.py", 'NODE_CLASS_MAPPINGS = {"G": 1}\n')
    packs = {p.name: p for p in list_packs(custom)}
    assert packs["Literal"].node_types == ["A", "B"]
    assert packs["Updating"].node_types == ["C", "D", "E"]
    assert packs["Broken"].problems and "cannot parse" in packs["Broken"].problems[0]
    assert (packs["Off"].enabled, packs["Off"].disabled_by, packs["Off"].node_types) == (False, "suffix", ["F"])
    assert packs["single"].node_types == ["G"]


def test_list_packs_reads_git_remote(tmp_path: Path) -> None:
    pack = tmp_path / "custom_nodes" / "KJ"
    write(pack / "__init__.py", "NODE_CLASS_MAPPINGS = {}\n")
    write(pack / ".git" / "config", '[remote "origin"]\n\turl = https://github.com/kijai/ComfyUI-KJNodes.git\n')
    assert list_packs(tmp_path / "custom_nodes")[0].git_remote == "https://github.com/kijai/ComfyUI-KJNodes.git"


def test_keys_that_are_class_attributes_built_by_a_helper_are_computed(tmp_path: Path) -> None:
    # The rgthree way: NAME = helper("Seed") in a class of a submodule; the helper appends a constant suffix.
    pack = tmp_path / "custom_nodes" / "suffixed"
    write(pack / "lib" / "names.py", "BRAND = 'acme'\n\ndef label(text):\n    return '{} ({})'.format(text, BRAND)\n")
    write(pack / "lib" / "fstr.py", "def tagged(text, tag='x'):\n    '''Doc.'''\n    return f'{text} [{tag}]'\n")
    write(
        pack / "lib" / "seed.py",
        "from .names import label\nfrom .fstr import tagged\n\nclass Seed:\n    NAME = label('Seed')\n"
        "class Mixer:\n    BASE = 'Mix'\n    NAME = BASE + 'er' + ' %s' % 'v2'\n"
        "class Tagged:\n    NAME = tagged('Tag', tag='t')\nclass Child(Seed):\n    pass\n",
    )
    write(
        pack / "__init__.py",
        "from .lib.seed import Seed, Mixer, Tagged, Child\n"
        "NODE_CLASS_MAPPINGS = {Seed.NAME: Seed, Mixer.NAME: Mixer}\n"
        "NODE_CLASS_MAPPINGS[Tagged.NAME] = Tagged\n"
        "NODE_CLASS_MAPPINGS.update({'Child' + Child.NAME: Child})\n",
    )
    [found] = list_packs(tmp_path / "custom_nodes")
    assert found.node_types == ["ChildSeed (acme)", "Mixer v2", "Seed (acme)", "Tag [t]"]


def test_keys_of_a_config_dict_handed_to_a_generator_are_read(tmp_path: Path) -> None:
    # The KJNodes way: a dict literal of type -> settings, extended in try blocks, turned into the mappings.
    pack = tmp_path / "custom_nodes" / "generated"
    write(
        pack / "__init__.py",
        "from .nodes import Alpha, Beta\n"
        "SETTINGS = {\n    'AlphaNode': {'class': Alpha, 'name': 'Alpha'},\n    'BetaNode': {'class': Beta},\n}\n"
        "try:\n    from .extra import Gamma\n    SETTINGS.update({'GammaNode': {'class': Gamma}})\n"
        "except ImportError:\n    pass\n"
        "def make_mappings(settings):\n    classes, names = {}, {}\n"
        "    for key, info in settings.items():\n        classes[key] = info['class']\n    return classes, names\n"
        "NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = make_mappings(SETTINGS)\n",
    )
    write(pack / "nodes.py", "class Alpha: pass\nclass Beta: pass\n")
    [found] = list_packs(tmp_path / "custom_nodes")
    assert found.node_types == ["AlphaNode", "BetaNode", "GammaNode"]


def test_submodule_mappings_merged_by_update_spread_and_union_are_read(tmp_path: Path) -> None:
    # The essentials way: each submodule fills its own *_CLASS_MAPPINGS; the package merges them after imports.
    pack = tmp_path / "custom_nodes" / "merged"
    write(pack / "image.py", "class Blur: pass\nPICTURE_MAPS = {'Blur+': Blur}\nPICTURE_MAPS['Sharpen+'] = Blur\n")
    write(pack / "mask.py", "MASK_CLASS_MAPPINGS = {'MaskGrow+': object}\n")
    write(pack / "text.py", "WORDS = {'TextJoin+': object}\n")
    write(pack / "misc.py", "OTHER = dict(Counter=object)\n")
    write(
        pack / "__init__.py",
        "from .image import *\nfrom .mask import MASK_CLASS_MAPPINGS as MASKS\nfrom .text import WORDS\n"
        "from .misc import OTHER\n"
        "NODE_CLASS_MAPPINGS = {}\nNODE_CLASS_MAPPINGS.update(PICTURE_MAPS)\n"
        "NODE_CLASS_MAPPINGS = {**NODE_CLASS_MAPPINGS, **MASKS}\nNODE_CLASS_MAPPINGS |= WORDS | OTHER\n",
    )
    [found] = list_packs(tmp_path / "custom_nodes")
    assert found.node_types == ["Blur+", "Counter", "MaskGrow+", "Sharpen+", "TextJoin+"]


def test_keys_that_are_not_constant_are_not_invented(tmp_path: Path) -> None:
    pack = tmp_path / "custom_nodes" / "dynamic"
    write(
        pack / "__init__.py",
        "import os\nA = B\nB = A\nPREFIX = os.environ.get('P', 'p')\nT = '{0.__class__}'\n"
        "def two(x):\n    y = x\n    return y\n"
        "NODE_CLASS_MAPPINGS = {A: 1, PREFIX + 'x': 2, T.format('s'): 3, two('z'): 4, 'Kept': 5}\n"
        "NODE_CLASS_MAPPINGS.update({k: v for k, v in globals().items()})\n"
        "LOOP = {**OTHER, 'Looped': 1}\nOTHER = {**LOOP}\nCONF = {'FromConf': 1}\n"
        "NODE_CLASS_MAPPINGS.update(build(CONF, strict=True))\nNODE_CLASS_MAPPINGS |= OTHER\n"
        "NODE_CLASS_MAPPINGS['%999999999s' % 'w'] = 1\nNODE_CLASS_MAPPINGS['{:>999999999}'.format('w')] = 1\n"
        "D1 = 'ab' + 'cd'\nD2 = D1 + D1\nD3 = D2 + D2\nD4 = D3 + D3\nD5 = D4 + D4\nD6 = D5 + D5\nD7 = D6 + D6\n"
        "D8 = D7 + D7\nD9 = D8 + D8\nNODE_CLASS_MAPPINGS[D9] = 1\nNODE_CLASS_MAPPINGS['%s (%s)' % ('n', 'p')] = 1\n",
    )
    [found] = list_packs(tmp_path / "custom_nodes")
    # a setting handed to a generator is no node type; dicts merged into each other end
    assert found.node_types == ["FromConf", "Kept", "Looped", "n (p)"]


def test_a_packs_python_files_are_listed_init_first_then_by_depth_and_path(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    for name in ("z.py", "a.py", "__init__.py", "sub/b.py", "sub/__init__.py", "sub/deep/c.py", "notes.txt"):
        (pack / name).parent.mkdir(parents=True, exist_ok=True)
        (pack / name).write_text("", encoding="utf-8")
    (pack / ".git").mkdir()
    (pack / ".git" / "hook.py").write_text("", encoding="utf-8")
    expected = ["__init__.py", "sub/__init__.py", "a.py", "z.py", "sub/b.py", "sub/deep/c.py"]
    assert custom_nodes._python_files(pack) == [pack / name for name in expected]
    assert custom_nodes._python_file_texts(pack) == [str(pack / name) for name in expected]
