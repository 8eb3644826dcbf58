"""The conformance kit (tests/conformance.py) on every registered family, old and new, one tiny
random-weight model per model type and tiny variant: no family is tested by hand-written cases."""

from __future__ import annotations

import pytest

from conformance import Case, cases, run

CASES = cases()


def test_the_kit_covers_every_supported_model_type():
    from routelens.models.adapters import supported_model_types

    assert {case.model_type for case in CASES} == set(supported_model_types())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_family_conforms(case: Case):
    run(case)


def test_the_kit_fails_a_wrong_declaration():
    """A declaration naming the key projection as the value projection (same shape, so the
    construction-time check passes) is caught by the kit: the parts do not rebuild the writes."""
    import dataclasses

    from routelens.models.adapters.families import LLAMA
    from routelens.models.adapters import Values

    wrong = dataclasses.replace(LLAMA, name="wrong-llama", model_types=("llama",), values=Values("self_attn.k_proj"))
    with pytest.raises(AssertionError, match="attention rebuilt to"):
        run(Case(wrong, "llama", 0))


NEW_ARCHITECTURE = '''
"""A new architecture and its routelens family, declared as docs/adding-a-model.md says."""
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from routelens.models.adapters import Family, Values


class TinyNewConfig(LlamaConfig):
    model_type = "routelens_guide_arch"


class TinyNewForCausalLM(LlamaForCausalLM):
    config_class = TinyNewConfig


AutoConfig.register("routelens_guide_arch", TinyNewConfig)
AutoModelForCausalLM.register(TinyNewConfig, TinyNewForCausalLM)

FAMILY = Family(
    name="guide-arch",
    model_types=("routelens_guide_arch",),
    values=Values("self_attn.v_proj"),
    tiny=({"attention_bias": True, "mlp_bias": True}, {"sliding_window": 4}),
)
'''


def test_a_family_declared_in_a_new_module_is_picked_up(tmp_path):
    """The guide end to end: a family declared in a temporary module, published through the
    "routelens.families" entry point, is listed by the CLI and checked by the kit with no test
    written for it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "guide_arch.py").write_text(NEW_ARCHITECTURE)
    dist = tmp_path / "guide_arch-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: guide-arch\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[routelens.families]\nguide = guide_arch:FAMILY\n")
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(tests)])}
    listed = subprocess.run([sys.executable, "-m", "routelens", "models", "--architectures"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0, listed.stderr
    assert "routelens_guide_arch" in listed.stdout and "guide-arch" in listed.stdout
    kit = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v",
                          str(tests / "test_conformance.py"), "-k", "routelens_guide_arch or covers_every"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tests.parent)
    assert kit.returncode == 0, kit.stdout[-3000:] + kit.stderr[-2000:]
    for variant in (0, 1):
        assert f"test_family_conforms[routelens_guide_arch-{variant}] PASSED" in kit.stdout, kit.stdout[-3000:]
    assert "test_the_kit_covers_every_supported_model_type PASSED" in kit.stdout
