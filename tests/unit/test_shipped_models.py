"""The shipped weight files say where they come from, and their parents ship too."""
import torch

from shared.inference import DEFAULT_MODEL, PACKAGE_MODELS, file_sha256, load_model


def test_default_model_names_its_parents_and_data():
    shipped = {file_sha256(p): p for p in PACKAGE_MODELS.rglob("*.pt")}
    model = load_model(DEFAULT_MODEL, "cpu")
    prov = model.meta["provenance"]
    assert prov["command"] and prov["git_commit"] and prov["data_manifests"]
    assert all(len(sha) == 64 for sha in prov["data_manifests"].values())
    assert prov["parents"], "the default is the guarded copy of a trained file"
    for role, parent in prov["parents"].items():
        assert parent["sha256"] in shipped, f"{role} parent {parent['path']} is not shipped"
    assert model.guard is not None and model.meta["guard_tuning"]["data"] == ["data/photos/DIV2K_valid_HR"]
    trained, fitted = model.meta["epochs"] > 0, len(model.meta.get("balance", ())) == 3   # trained, or a fitted
    assert trained or fitted                                                             # zero-correction Wiener


def test_every_model_file_with_provenance_has_its_parents_shipped():
    shipped = {file_sha256(p): p for p in PACKAGE_MODELS.rglob("*.pt")}
    for path in PACKAGE_MODELS.rglob("*.pt"):
        payload = torch.load(path, map_location="cpu", weights_only=True)
        prov = (payload.get("meta") or {}).get("provenance")
        for parent in (prov or {}).get("parents", {}).values():
            assert parent["sha256"] in shipped, f"{path.name}: parent {parent['path']} is not shipped"
