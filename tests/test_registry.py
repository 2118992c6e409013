"""The model registry: immutable versions, checksums, aliases, the event log and pickle-free loading."""

import json
import pickle

import numpy as np
import pytest
import torch

from batch_assets.core.model_format import ArtifactError
from batch_assets.core.names import InvalidName
from batch_assets.core.registry import (
    ChecksumMismatch,
    ModelNotFound,
    ModelRegistry,
    RegistryError,
    VersionExists,
)
from tests.conftest import make_model, write_artifact


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def artifact(tmp_path):
    return write_artifact(tmp_path / "a" / "model.safetensors")


def test_register_assigns_versions_and_writes_manifest(registry, artifact, tmp_path):
    v1 = registry.register("risk_model", artifact)
    v2 = registry.register("risk_model", write_artifact(tmp_path / "b" / "m.safetensors", make_model(seed=1)))
    assert (v1.version, v2.version) == ("1", "2")
    assert registry.versions("risk_model") == ["1", "2"]
    m = json.loads((registry.root / "risk_model" / "1" / "manifest.json").read_text())
    assert m["sha256"] == v1.sha256 and len(m["sha256"]) == 64
    assert [f["name"] for f in m["inputs"]][:2] == ["txn_count_1d", "amount_sum_1d"]
    assert all(f["dtype"] == "float32" for f in m["inputs"])
    assert m["output"]["range"] == [0.0, 1.0]
    assert set(m["reference"]["features"]) == {f["name"] for f in m["inputs"]}
    assert len(m["reference"]["score"]["quantiles"]) == 101
    assert m["torch_version"] == torch.__version__ and m["format"].startswith("safetensors")


def test_registering_over_an_existing_version_is_refused(registry, artifact):
    registry.register("risk_model", artifact, version="1.0")
    before = (registry.root / "risk_model" / "1.0" / "model.safetensors").read_bytes()
    with pytest.raises(VersionExists, match="immutable"):
        registry.register("risk_model", artifact, version="1.0")
    assert (registry.root / "risk_model" / "1.0" / "model.safetensors").read_bytes() == before
    assert not [p for p in (registry.root / "risk_model").iterdir() if p.name.startswith(".1.0")]


def test_load_verifies_checksum(registry, artifact):
    info = registry.register("risk_model", artifact)
    loaded = registry.load("risk_model", info.version)
    x = torch.rand(4, len(info.feature_names))
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), make_model().eval()(x))
    # flip one byte of the stored artifact: loading must refuse it
    path = info.artifact_path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="does not match the manifest"):
        registry.load("risk_model", info.version)


def test_aliases_and_event_log(registry, artifact):
    registry.register("risk_model", artifact)
    registry.register("risk_model", artifact)
    assert registry.promote("risk_model", "1") is None
    assert registry.promote("risk_model", "2") == "1"
    assert registry.resolve("risk_model", "champion").version == "2"
    assert registry.resolve("risk_model", "1").version == "1"
    events = registry.events("risk_model")
    assert [e["event"] for e in events] == ["register", "register", "promote", "promote"]
    assert events[-1]["previous"] == "1" and events[-1]["version"] == "2"
    with pytest.raises(ModelNotFound, match="promote one with"):
        registry.resolve("risk_model", "challenger")
    with pytest.raises(ModelNotFound):
        registry.promote("risk_model", "9")


def test_pickle_payload_is_refused_without_executing(registry, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ArtifactError):
        registry.register("risk_model", evil)
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ArtifactError):
        registry.register("risk_model", tmp_path / "evil.pt")
    assert not marker.exists()


def test_manifest_pointing_outside_the_version_folder_is_refused(registry, artifact):
    info = registry.register("risk_model", artifact)
    manifest_path = info.path / "manifest.json"
    m = json.loads(manifest_path.read_text())
    m["artifact"] = "../../../../etc/passwd"
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(RegistryError, match="outside"):
        registry.load("risk_model", info.version)


def test_artifact_whose_inputs_do_not_fit_the_network_is_refused(registry, tmp_path):
    from batch_assets.core.model_format import save_artifact

    path = save_artifact(
        make_model(4),
        tmp_path / "m.safetensors",
        architecture={"name": "tabular_mlp", "params": {"n_features": 4, "hidden": [16, 8]}},
        inputs=[{"name": "a", "dtype": "float32"}] * 3,
        output={"name": "score"},
    )
    with pytest.raises(RegistryError, match="cannot score 3 declared input features"):
        registry.register("risk_model", path)


@pytest.mark.parametrize("name", ["../escape", "a/b", "x;rm"])
def test_hostile_names_never_reach_the_file_system(registry, artifact, name):
    with pytest.raises(InvalidName):
        registry.register(name, artifact)
    with pytest.raises(InvalidName):
        registry.register("risk_model", artifact, version=name)
    assert not (registry.root.parent / "escape").exists()


def test_reference_statistics_describe_training_data(registry, artifact):
    info = registry.register("risk_model", artifact)
    ref = info.manifest["reference"]["features"]["txn_count_1d"]
    assert ref["count"] == 256 and ref["non_finite"] == 0
    assert ref["quantiles"][0] == ref["min"] and ref["quantiles"][-1] == ref["max"]
    assert np.all(np.diff(ref["quantiles"]) >= 0)
