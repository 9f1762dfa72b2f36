"""The docs are tested: every code block of README.md, docs/**/*.md and the examples' READMEs
runs, the spec reference documents every field with a valid example, and the site builds with
``mkdocs build --strict`` with README.md as its home page.

How each fenced block of a page is checked (a page's blocks run in order, in a fresh folder
where the repository's ``examples/`` is at hand, so a page can build up a study):

- ``python``: executed; the page's blocks share one namespace whose ``__name__`` is
  ``"__main__"``, as in a script. With ``title="FILE"`` the block is written to FILE instead
  (a module that a study imports).
- ``yaml``: with ``title="FILE"`` written to FILE. A study spec (it has ``objective``,
  ``space`` and ``trial``) is validated as ``tuner validate`` does; a fragment (some of a
  spec's sections) is validated put over the page's last spec, its sections replacing the
  spec's (over a small spec of its own before the page has one).
- ``console``: each ``$ tuner ...`` command runs (in this process, on the session's Ray
  cluster); the lines under a command are lines its output must contain, in order (``...``
  stands for any text). ``bash``: every line is a ``tuner`` command, run the same way.
- ``toml`` is parsed; ``text`` (output, listings) is not code.
- ``<!-- excerpt: FILE -->`` right before a block: the block, in any language, is an excerpt
  of FILE (one an earlier block wrote, or in ``examples/``); its lines are FILE's, in order,
  leaving out only comment lines (a line ``...`` stands for any lines).
- ``<!-- trials: N -->``: the block's ``tuner run`` commands run with ``--max-trials N``, for
  an example whose full budget takes minutes (its readers run it in full).
- ``<!-- skip: REASON -->`` right before a block: not run, and reported as skipped with the
  reason. ``<!-- exit: N -->``: the block's commands exit with N (default 0).
  ``<!-- invalid -->``: the yaml block is a spec with mistakes, which must not validate.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tuner.spec import StudySpec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md"), *ROOT.glob("examples/*/README.md")])
MAX_SKIPPED = 13
"""Blocks that cannot run here (AWS, Docker, servers that run until Ctrl-C): few, each with a
reason."""

SPEC_KEYS = frozenset(StudySpec.model_fields)
"""The top-level sections of a spec: a yaml block with only these is a spec or a fragment."""
FRAGMENT_BASE: dict[str, Any] = {
    "name": "docs-fragment",
    "objective": {"metric": "loss"},
    "space": {"x": {"type": "float", "low": -5.0, "high": 5.0}},
    "budget": {"max_trials": 2},
    "trial": {"function": "examples.functions:quadratic"},
}
"""The spec a fragment is put over when its page has shown no spec yet."""


# --- reading the pages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    title: str | None
    code: str
    markers: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
_MARKER = re.compile(
    r"^\s*<!--\s*(?P<key>skip|exit|invalid|excerpt|trials)\s*(?::\s*(?P<value>.*?))?\s*-->\s*$"
)
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the markers in the comments right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        end = index + 1
        while end < len(lines) and not (
            lines[end].strip().startswith(fence) and lines[end].strip().strip(fence[0]) == ""
        ):
            end += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip()
            for line in lines[index + 1 : end]
        ]
        title = _TITLE.search(opening["attrs"])
        blocks.append(
            Block(
                page=page,
                line=index + 1,
                lang=opening["lang"].lower(),
                title=title["title"] if title else None,
                code="\n".join(body) + "\n",
                markers=_markers_before(lines, index),
            )
        )
        index = end + 1
    return blocks


def _markers_before(lines: list[str], index: int) -> dict[str, str]:
    markers: dict[str, str] = {}
    above = index - 1
    while above >= 0 and (not lines[above].strip() or _MARKER.match(lines[above])):
        found = _MARKER.match(lines[above])
        if found:
            markers[found["key"]] = found["value"] or ""
        above -= 1
    return markers


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
SKIPPED = [block for block in ALL_BLOCKS if "skip" in block.markers]


# --- running a page -------------------------------------------------------------------------


class PageRun:
    """Runs one page's blocks in order in ``workdir``."""

    def __init__(self, workdir: Path, start_ray: Any):
        self.workdir = workdir
        self.start_ray = start_ray
        self.namespace: dict[str, Any] = {"__name__": "__main__"}
        self.spec: dict[str, Any] | None = None
        self.spec_dir = workdir

    def run(self, block: Block) -> None:
        if "excerpt" in block.markers:
            self.excerpt(block, self.workdir / block.markers["excerpt"])
            return
        handler = {
            "python": self.python,
            "py": self.python,
            "yaml": self.yaml,
            "yml": self.yaml,
            "console": self.console,
            "bash": self.bash,
            "sh": self.bash,
            "shell": self.bash,
            "toml": self.toml,
            "text": lambda block: None,
        }.get(block.lang)
        if handler is None:
            pytest.fail(
                f"{block.where}: a ```{block.lang or '(no language)'} block; give it a "
                "language the docs test knows (python, yaml, console, bash, toml, text)"
            )
        handler(block)

    def python(self, block: Block) -> None:
        if block.title:
            self.write(block)
            return
        self.start_ray()
        code = compile(block.code, block.where, "exec")
        exec(code, self.namespace)

    def excerpt(self, block: Block, path: Path) -> None:
        """Each run of the block's lines between ``...`` lines is a run of ``path``'s lines,
        but for comment lines the run leaves out."""
        if not path.is_file():
            pytest.fail(f"{block.where}: an excerpt of {path.name}, which no earlier block wrote")
        lines = [line.rstrip() for line in path.read_text(encoding="utf-8").splitlines()]
        position = 0
        for run in _runs(block.code):
            ends = (_run_at(lines, run, start) for start in range(position, len(lines)))
            end = next((end for end in ends if end is not None), None)
            assert end is not None, (
                f"{block.where}: these lines are not in {block.markers['excerpt']} (after "
                f"line {position}), as the page says:\n" + "\n".join(run)
            )
            position = end

    def yaml(self, block: Block) -> None:
        from tuner.spec import SpecError

        path = self.write(block) if block.title else None
        data = yaml.safe_load(block.code)
        if not isinstance(data, dict) or not set(data) <= SPEC_KEYS:
            if path is None:
                pytest.fail(
                    f"{block.where}: a yaml block that is no study spec; give it a "
                    'title="FILE" if a later block uses the file, or mark it <!-- skip: why -->'
                )
            return
        is_spec = {"objective", "space", "trial"} <= set(data)
        if "invalid" in block.markers:
            with pytest.raises(SpecError):
                self._validate(block, data, path, is_spec)
            return
        self._validate(block, data, path, is_spec)
        if is_spec:
            self.spec = data
            self.spec_dir = path.parent if path is not None else self.workdir

    def _validate(
        self, block: Block, data: dict[str, Any], path: Path | None, is_spec: bool
    ) -> None:
        from tuner.spec import SpecError, load_spec, load_spec_text

        try:
            if is_spec and path is not None:
                load_spec(path)
            elif is_spec:
                load_spec_text(block.code, block.where, spec_dir=str(self.spec_dir))
            else:
                merged = {**(self.spec or FRAGMENT_BASE), **data}
                load_spec_text(
                    yaml.safe_dump(merged, sort_keys=False),
                    block.where,
                    spec_dir=str(self.spec_dir),
                )
        except SpecError as exc:
            if "invalid" in block.markers:
                raise
            pytest.fail(f"{block.where}: the spec does not validate:\n{exc}")

    def toml(self, block: Block) -> None:
        tomllib.loads(block.code)

    def console(self, block: Block) -> None:
        commands: list[tuple[str, list[str]]] = []
        for line in _joined_lines(block.code):
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
            elif line.strip():
                pytest.fail(f"{block.where}: output before the first `$ ` command: {line!r}")
        for command, expected in commands:
            output = self.command(block, command)
            _assert_shows(block, command, output, expected)

    def bash(self, block: Block) -> None:
        for line in _joined_lines(block.code):
            if line.strip() and not line.lstrip().startswith("#"):
                self.command(block, line)

    def command(self, block: Block, command: str) -> str:
        """Runs one `tuner` command line and returns what it printed."""
        from typer.testing import CliRunner

        from tuner.cli import app

        words = shlex.split(command, comments=True)
        redirect = None
        if len(words) >= 2 and words[-2] == ">":
            redirect, words = self.workdir / words[-1], words[:-2]
        if not words or words[0] != "tuner":
            pytest.fail(
                f"{block.where}: `{command}` is not a tuner command, which the docs test "
                "cannot run; mark the block <!-- skip: why it cannot run here -->"
            )
        if words[1:2] == ["ui"]:
            pytest.fail(f"{block.where}: `tuner ui` serves until Ctrl-C; mark the block skip")
        if words[1:2] in (["run"], ["resume"]):
            self.start_ray()
        if words[1:2] == ["run"] and "trials" in block.markers:
            words += ["--max-trials", block.markers["trials"]]
        result = CliRunner().invoke(app, words[1:], catch_exceptions=True)
        output = result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{block.where}: `{command}` raised\n{output}") from (
                result.exception
            )
        expected_code = int(block.markers.get("exit", 0))
        assert result.exit_code == expected_code, (
            f"{block.where}: `{command}` exited {result.exit_code}, the page says "
            f"{expected_code}:\n{output}"
        )
        if redirect is not None:
            redirect.write_text(result.stdout)
        return output

    def write(self, block: Block) -> Path:
        assert block.title is not None
        path = self.workdir / block.title
        # `examples/` links to the repository's: a page must never write into it.
        if not path.resolve().is_relative_to(self.workdir.resolve()) or path.is_symlink():
            pytest.fail(
                f"{block.where}: title={block.title!r} would write outside the page's folder"
            )
        if any(part == "examples" for part in Path(block.title).parts[:1]):
            pytest.fail(f"{block.where}: title={block.title!r} would write into examples/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code, encoding="utf-8")
        return path


def _joined_lines(code: str) -> Iterator[str]:
    """Lines with trailing-backslash continuations joined."""
    pending = ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def _runs(code: str) -> Iterator[list[str]]:
    """The runs of lines between ``...`` lines."""
    run: list[str] = []
    for line in code.splitlines():
        if line.strip() == "...":
            if run:
                yield run
            run = []
        else:
            run.append(line.rstrip())
    if run:
        yield run


def _run_at(lines: list[str], run: list[str], start: int) -> int | None:
    """Where ``run`` ends if it is ``lines`` from ``start`` on, comment lines left out."""
    index = start
    for wanted in run:
        while (
            index < len(lines)
            and lines[index] != wanted
            and lines[index].lstrip().startswith("#")
            and index > start
        ):
            index += 1
        if index >= len(lines) or lines[index] != wanted:
            return None
        index += 1
    return index


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _assert_shows(block: Block, command: str, output: str, expected: list[str]) -> None:
    """Each shown output line is in the real output, in order; ``...`` stands for any text."""
    actual = _normalised(output)
    position = 0
    for line in expected:
        for part in _normalised(line).split("..."):
            part = part.strip()
            if not part:
                continue
            found = actual.find(part, position)
            assert found >= 0, (
                f"{block.where}: `{command}` did not print what the page shows:\n  {line}\n"
                f"It printed:\n{output}"
            )
            position = found + len(part)


@pytest.fixture
def page_dir(tmp_path: Path) -> Path:
    """A fresh folder with the repository's examples at hand, as in a checkout."""
    (tmp_path / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return tmp_path


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_code_block_of_the_page_runs(
    page: Path, page_dir: Path, request: pytest.FixtureRequest
) -> None:
    run = PageRun(page_dir, start_ray=lambda: request.getfixturevalue("ray_cluster"))
    for block in code_blocks(page):
        if "skip" not in block.markers:
            run.run(block)


@pytest.mark.parametrize("block", SKIPPED, ids=lambda block: block.where)
def test_a_skipped_block_says_why(block: Block) -> None:
    reason = block.markers["skip"]
    assert len(reason.split()) >= 2, f"{block.where}: say why the block cannot run here"
    pytest.skip(f"{block.where}: {reason}")


def test_skipped_blocks_are_few() -> None:
    assert len(SKIPPED) <= MAX_SKIPPED, "\n".join(
        f"{block.where}: {block.markers['skip']}" for block in SKIPPED
    )


def test_files_the_pages_write_do_not_share_a_module_name() -> None:
    """Ray workers keep imported modules: two pages' ``train.py`` would meet on one worker."""
    modules: dict[str, str] = {}
    for block in ALL_BLOCKS:
        if block.title and block.lang in ("python", "py") and "skip" not in block.markers:
            name = Path(block.title).stem
            assert name not in modules, (
                f"{block.where} and {modules[name]} both write a module `{name}`; rename one"
            )
            modules[name] = block.where


def test_a_fenced_block_is_found_with_its_title_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n<!-- skip: needs AWS credentials -->\n\n"
        '```yaml title="study.yaml"\nname: x\n```\n\n'
        "1. A step:\n\n    ```console\n    $ tuner validate study.yaml\n    ok\n    ```\n"
    )
    spec, console = code_blocks(page)
    assert (spec.lang, spec.title, spec.code, spec.markers) == (
        "yaml",
        "study.yaml",
        "name: x\n",
        {"skip": "needs AWS credentials"},
    )
    assert (console.lang, console.code, console.markers) == (
        "console",
        "$ tuner validate study.yaml\nok\n",
        {},
    )


def test_a_page_that_shows_output_a_command_does_not_print_fails(page_dir: Path) -> None:
    page = page_dir / "page.md"
    page.write_text("```console\n$ tuner schema\nno such line\n```\n")
    (block,) = code_blocks(page)
    with pytest.raises(AssertionError, match="did not print what the page shows"):
        PageRun(page_dir, start_ray=lambda: None).run(block)


def test_an_excerpt_is_checked_against_the_file_it_quotes(page_dir: Path) -> None:
    (page_dir / "study.yaml").write_text(
        "# the trial\ntrial:\n  # what it runs\n  function: train:train\n  timeout: 5m\n"
        "budget: {max_trials: 4}\n"
    )
    page = page_dir / "page.md"
    page.write_text(
        "<!-- excerpt: study.yaml -->\n```text\ntrial:\n  function: train:train\n  ...\n"
        "budget: {max_trials: 4}\n```\n\n"
        "<!-- excerpt: study.yaml -->\n```yaml\ntrial:\n  timeout: 5m\n```\n"
    )
    quoted, drifted = code_blocks(page)
    run = PageRun(page_dir, start_ray=lambda: None)
    run.run(quoted)  # a comment line left out, and `...` for the rest
    with pytest.raises(AssertionError, match=r"not in study\.yaml"):
        run.run(drifted)  # a line left out that is no comment


def test_the_site_home_page_is_the_readme_not_a_copy() -> None:
    hook = _hook("readme_home")
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    assert hook.MARKER in index
    assert not re.sub(r"<!--.*?-->", "", index, flags=re.DOTALL).strip(), (
        "docs/index.md has text of its own; the home page is README.md, edit that"
    )


def test_readme_links_are_rewritten_for_the_site_root() -> None:
    hook = _hook("readme_home")
    readme = (
        "See [MLflow](docs/guides/mlflow.md#runs), ![plot](./docs/images/p.png),\n"
        "[optuna](https://optuna.org) and [below](#one-example).\n\n"
        '<img src="docs/images/p.png">\n\n[ref]: docs/reference/spec.md\n\n'
        "```python\nx = a[0](docs/y)\n```\n"
    )
    assert hook.home_page(readme) == (
        "See [MLflow](guides/mlflow.md#runs), ![plot](images/p.png),\n"
        "[optuna](https://optuna.org) and [below](#one-example).\n\n"
        '<img src="images/p.png">\n\n[ref]: reference/spec.md\n\n'
        "```python\nx = a[0](docs/y)\n```\n"
    )
    outside = "[the quickstart](examples/quickstart/README.md)"
    with pytest.raises(ValueError, match="outside docs/"):
        hook.home_page(outside)
    assert hook.home_page(outside, "https://github.com/o/tuner/") == (
        "[the quickstart](https://github.com/o/tuner/blob/HEAD/examples/quickstart/README.md)"
    )


def test_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((?!https?://|#|mailto:)([^)#\s]+)", text)
    assert targets, "the README links to the docs pages"
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


# --- the spec reference ---------------------------------------------------------------------


def _hook(name: str = "spec_reference") -> ModuleType:
    """A module of docs/hooks (MkDocs loads them by path; so do these tests)."""
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(f"docs_{name}", module)
    spec.loader.exec_module(module)
    return module


def _reference_sections() -> list[Any]:
    hook = _hook()
    return hook.sections(hook.reference_schema(), hook.load_examples())


def test_the_spec_reference_gives_every_field_a_type_a_default_and_an_example() -> None:
    missing = [
        f"{section.id}.{field.name}"
        for section in _reference_sections()
        for field in section.fields
        if not (field.type and field.default and field.example)
    ]
    assert not missing, (
        f"fields without an example: {missing}; add one to docs/hooks/spec_examples.yaml"
    )


def test_the_spec_reference_has_a_section_for_every_model_of_the_spec() -> None:
    from tuner.backends.ray import RayConfig
    from tuner.backends.sagemaker import SageMakerConfig

    hook = _hook()
    schema = hook.reference_schema()
    models = {
        name for name, definition in schema["$defs"].items() if "properties" in definition
    } | {RayConfig.__name__, SageMakerConfig.__name__, "StudySpec"}
    documented = {section.model for section in hook.sections(schema, hook.load_examples())}
    assert documented == models


def test_every_example_of_the_spec_reference_validates() -> None:
    from tuner.spec import SpecError, load_spec_text

    hook = _hook()
    spec_dir = ROOT / "examples" / "sagemaker-text-classifier"  # has the entry point train.py
    problems = []
    for section in _reference_sections():
        for fragment in section.examples:
            if hook.find_section(fragment, section.path) is None:
                problems.append(f"{section.id}: an example without `{'.'.join(section.path)}`")
                continue
            text = yaml.safe_dump({**FRAGMENT_BASE, **fragment}, sort_keys=False)
            try:
                load_spec_text(text, f"example of {section.id}", spec_dir=str(spec_dir))
            except SpecError as exc:
                problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_the_reference_shows_limits_defaults_and_examples_from_the_schema() -> None:
    from typing import Literal

    from pydantic import BaseModel, Field

    class Toy(BaseModel):
        """A toy section."""

        count: int = Field(3, ge=1, le=9, description="How many.")
        mode: Literal["fast", "exact"] = "fast"
        tag: str = Field(pattern=r"^x-\w+$")

    hook = _hook()
    schema = Toy.model_json_schema()
    (section,) = hook.sections(schema, {"spec": [{"count": 4, "tag": "x-1"}]})
    rows = {field.name: field for field in section.fields}
    assert (rows["count"].type, rows["count"].default, rows["count"].limits) == (
        "integer",
        "`3`",
        "≥ 1; ≤ 9",
    )
    assert rows["count"].example == "`count: 4`"
    assert rows["mode"].limits == "one of `fast`, `exact`"
    assert rows["mode"].example is None
    assert (rows["tag"].default, rows["tag"].limits) == ("**required**", r"matches `^x-\w+$`")
    page = hook.render([section])
    assert "| `count` | integer | `3` | ≥ 1; ≤ 9 | How many. | `count: 4` |" in page


def test_the_hook_fills_in_the_spec_page_only() -> None:
    hook = _hook()

    class Page:
        def __init__(self, src_uri: str):
            self.file = type("File", (), {"src_uri": src_uri})()

    filled = hook.on_page_markdown(f"# Spec\n\n{hook.MARKER}\n", page=Page(hook.PAGE))
    assert hook.MARKER not in filled
    assert "## `budget` {#budget}" in filled
    assert hook.on_page_markdown(hook.MARKER, page=Page("index.md")) == hook.MARKER
    with pytest.raises(ValueError, match="lost its marker"):
        hook.on_page_markdown("# Spec\n", page=Page(hook.PAGE))


# --- the command-line reference and the API reference ----------------------------------------


def test_the_cli_reference_shows_every_command_with_its_options() -> None:
    hook = _hook("cli_reference")
    commands = {command.name: command for command in hook.commands()}
    assert {"run", "resume", "validate", "status", "best", "sync", "ui", "schema", "init"} <= set(
        commands
    )
    run = dict(commands["run"].params)
    assert run["--max-trials <int>"] == "Override budget.max_trials."
    assert commands["run"].usage.startswith("tuner run [OPTIONS]")
    page = hook.render(list(commands.values()))
    assert "## `tuner resume` {#resume}" in page
    assert "| `--dry-run` | Validate and show the plan; run nothing. |" in page


def test_sphinx_roles_in_docstrings_show_as_code() -> None:
    roles = _hook("rst_roles")
    text = "Takes :class:`~tuner.space.Float` or :func:`tuner.load`; see :mod:`tuner.spec`."
    assert roles.plain(text) == "Takes `Float` or `tuner.load`; see `tuner.spec`."


# --- the site -------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """A broken link, anchor, image or API reference fails ``mkdocs build --strict``."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    home = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "Choosing a strategy" in home  # README.md's section
    assert 'href="guides/objectives/"' in home  # its `docs/guides/objectives.md` link
    reference = (tmp_path / "reference" / "spec" / "index.html").read_text(encoding="utf-8")
    assert 'id="backend-sagemaker-spot"' in reference
    api = (tmp_path / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "tuner.report" in api
