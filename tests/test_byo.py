"""Bring your own model: `batch-assets models register` with a user's state dict and architecture reference.

Safe formats register and score exactly like the original module; unsafe ones (TorchScript, torch.export
programs, arbitrary pickles) are refused without running anything; a model whose signature does not fit
the reference dataset is refused with a message naming the feature.
"""

import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from batch_assets.cli import main
from batch_assets.core.registry import ModelRegistry

FEATURES = ["temp", "load", "age"]
ARCH = "tests.test_byo:TinyNet"


class TinyNet(nn.Module):
    """A user's model: [n, 3] -> [n, 1] probabilities."""

    def __init__(self, n_features: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(n_features, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(torch.relu(self.layer(x))))


class Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['BYO_MARKER']}",))


@pytest.fixture
def user(tmp_path, settings):
    torch.manual_seed(3)
    model = TinyNet().eval()
    rng = np.random.default_rng(0)
    ref = tmp_path / "reference.parquet"
    columns = {
        "machine_id": pa.array(np.arange(50), pa.int64()),
        **{f: rng.normal(size=50) for f in FEATURES},
        "site": pa.array(["a"] * 50),
    }
    pq.write_table(pa.table(columns), ref)
    weights = tmp_path / "model.pt"
    torch.save(model.state_dict(), weights)
    return model, weights, ref, ModelRegistry(settings.registry)


def register(capsys, *args):
    code = main(["models", "register", "machine_model", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_state_dict_registers_and_scores_like_the_original(user, capsys, tmp_path):
    model, weights, ref, registry = user
    code, out = register(
        capsys,
        weights,
        "--architecture",
        ARCH,
        "--reference",
        ref,
        "--exclude",
        "machine_id",
        "--output-range",
        0,
        1,
    )
    assert code == 0, out
    assert "inputs: temp, load, age" in out
    info = registry.get("machine_model", "1")
    assert info.feature_names == FEATURES
    assert info.manifest["architecture"] == {"ref": ARCH, "params": {}}
    assert info.output_range == (0.0, 1.0)
    assert set(info.manifest["reference"]["features"]) == set(FEATURES)
    assert info.manifest["reference"]["rows"] == 50
    x = torch.randn(7, 3)
    loaded = registry.load("machine_model", "1").module
    assert loaded(x).shape == (7,)  # [n, 1] is scored as [n]
    assert torch.equal(loaded(x), model(x).squeeze(-1))


def test_safetensors_weights_with_explicit_features(user, capsys, tmp_path):
    model, _, ref, registry = user
    weights = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    kwargs = json.dumps({"n_features": 3, "hidden": 4})
    code, out = register(
        capsys,
        weights,
        "--architecture",
        ARCH,
        "--init-kwargs",
        kwargs,
        "--reference",
        ref,
        "--features",
        "temp,load,age",
    )
    assert code == 0, out
    info = registry.get("machine_model", "1")
    assert info.feature_names == FEATURES and info.manifest["architecture"]["params"] == {
        "n_features": 3,
        "hidden": 4,
    }
    assert "range" not in info.manifest["output"]  # no --output-range: validity checks finiteness only


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "temp,load,humidity"], "feature 'humidity' is not a column of the reference dataset"),
        (["--features", "temp,load,site"], "feature 'site' has type string in the reference dataset"),
        (["--features", "temp,load"], "first layer takes 3 inputs but 2 features are given (temp, load)"),
        (
            [],
            "first layer takes 3 inputs but 4 features are given (machine_id, temp, load, age); features beyond",
        ),
        (["--init-kwargs", '{"hidden": 5}'], "the weights do not fit tests.test_byo:TinyNet"),
        (["--init-kwargs", '{"colour": 1}'], "unexpected keyword argument 'colour'"),
    ],
)
def test_signature_mismatch_names_the_feature(user, capsys, args, message):
    _, weights, ref, registry = user
    code, out = register(capsys, weights, "--architecture", ARCH, "--reference", ref, *args)
    assert code == 2
    assert message in out, out
    assert registry.models() == []


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("os:system", "standard-library modules are refused"),
        ("batch_assets.core.names:check_name", "is not a torch.nn.Module subclass"),
        ("batch_assets.core.names:Nope", "module 'batch_assets.core.names' has no class 'Nope'"),
        ("my_missing_pkg.models:Net", "cannot import module 'my_missing_pkg.models'"),
        ("not a ref", "expected 'package.module:ClassName'"),
    ],
)
def test_architecture_reference_must_be_an_importable_module_class(user, capsys, arch, message):
    _, weights, ref, _ = user
    code, out = register(
        capsys, weights, "--architecture", arch, "--reference", ref, "--exclude", "machine_id"
    )
    assert code == 2 and message in out, out


def test_weights_without_an_architecture_ask_for_one(user, capsys):
    _, weights, ref, _ = user
    code, out = register(capsys, weights, "--reference", ref)
    assert code == 2 and "pass --architecture package.module:ClassName" in out


def test_torchscript_and_exported_programs_are_refused(user, capsys, tmp_path):
    model, _, ref, registry = user
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(scripted))
    exported = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(2, 3),)), str(exported))
    for path, what in [
        (scripted, "is a TorchScript archive: refused"),
        (exported, "is a torch.export program"),
    ]:
        code, out = register(capsys, path, "--architecture", ARCH, "--reference", ref)
        assert code == 2 and what in out, out
    assert registry.models() == []


def test_a_pickled_object_is_refused_without_running(user, capsys, tmp_path, monkeypatch):
    _, _, ref, _ = user
    marker = tmp_path / "pwned"
    monkeypatch.setenv("BYO_MARKER", str(marker))
    hostile = tmp_path / "hostile.pt"
    torch.save({"layer.weight": Boom()}, hostile, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    code, out = register(capsys, hostile, "--architecture", ARCH, "--reference", ref)
    assert code == 2 and "not a weights_only state dict" in out, out
    assert not marker.exists()


def test_an_artifact_naming_the_examples_old_module_still_loads():
    from batch_assets.core.model_format import import_architecture
    from batch_assets.demo.device_example import FailureNet

    assert import_architecture("batch_assets.scoring.device_example:FailureNet") is FailureNet
