"""Error messages a newcomer meets first: an unknown model names the models served (a
few, when there are many), and a model module that cannot be imported says whether it
was not found or failed while importing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from runtime.errors import ModelLoadError, ModelNotFound
from runtime.models.python import import_object


def test_unknown_model_names_at_most_ten_models_served() -> None:
    names = [f"m{i:02d}" for i in range(12)]
    msg = str(ModelNotFound("nope", served=reversed(names)))
    assert msg == (
        "unknown model 'nope'; models served: 'm00', 'm01', 'm02', 'm03', 'm04', 'm05', "
        "'m06', 'm07', 'm08', 'm09' and 2 more"
    )
    assert str(ModelNotFound("nope", served=[])) == "unknown model 'nope'; no models are served"
    assert str(ModelNotFound("nope")) == "unknown model 'nope'"


def test_a_module_missing_a_dependency_is_not_reported_as_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_dep_mlrt.py").write_text("import no_such_dependency_mlrt\nmodel = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "needs_dep_mlrt", raising=False)
    with pytest.raises(ModelLoadError) as info:
        import_object("needs_dep_mlrt:model")
    assert str(info.value) == (
        "importing module 'needs_dep_mlrt' failed: No module named 'no_such_dependency_mlrt'"
    )


def test_a_missing_package_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/models")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        import_object("no_such_pkg_mlrt.scoring:model")
    msg = str(info.value)
    assert msg == (
        "cannot import module 'no_such_pkg_mlrt.scoring' (No module named 'no_such_pkg_mlrt'); searched "
        f"PYTHONPATH=/opt/models, the packages installed for {sys.executable}, but not the current "
        f"directory ({tmp_path}). To fix: add the folder that holds no_such_pkg_mlrt.py (or "
        "no_such_pkg_mlrt/) to PYTHONPATH, or install the module's package"
    )
    # Where the current directory is searched (mlrt serve), the fix starts there.
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        import_object("no_such_pkg_mlrt.scoring:model")
    assert f"searched the current directory {tmp_path}, " in str(info.value)
    assert str(info.value).endswith(
        "To fix: start mlrt in the folder that holds no_such_pkg_mlrt.py (or no_such_pkg_mlrt/), add it "
        "to PYTHONPATH, or install the module's package"
    )
