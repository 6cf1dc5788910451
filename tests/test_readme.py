"""The README against the code: its configuration table, its API table and its layout.

Each of these drifts silently when someone adds a setting, an endpoint or a module and forgets
the manual; these tests name what is missing or stale.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# The folders whose every module the README's layout describes, one line each.
LAYOUT_FOLDERS = (
    "annotate",
    "annotate/settings",
    "annotate/management/commands",
    "annotate/services",
    "labeling_api",
    "worker",
    "worker/ml",
    "bench",
    "bin",
    "tests",
)

# The shell's own variables, which no environment sets for our scripts.
SHELL_SPECIAL = {"BASH_SOURCE", "HOME", "IFS", "OLDPWD", "PATH", "PWD", "RANDOM", "SECONDS"}


def readme_section(title: str) -> str:
    """The text under the `## title` heading, up to the next heading of the same level."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def table_rows(section: str) -> list[list[str]]:
    """The cells of each row of the first Markdown table in `section`, its header and rule
    rows left out. A `|` escaped as `\\|` inside a cell stays in the cell."""
    rows: list[list[str]] = []
    for line in section.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if rows:
                break  # the end of the first table
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows[1:] if rows else rows  # the first row is the header


# --- configuration ------------------------------------------------------------------------------


def _string_argument(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _is_environ(node: ast.expr) -> bool:
    """`os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def python_environment_reads(source: str) -> set[str]:
    """Variables a module reads: `env("X")`, `env.int("X")` (any django-environ method),
    `os.environ["X"]`, `os.environ.get("X")`, `os.getenv("X")`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            reads = (
                (isinstance(func, ast.Name) and func.id == "env")
                or (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "env"
                )
                or (isinstance(func, ast.Attribute) and func.attr == "getenv")
                or (
                    isinstance(func, ast.Attribute)
                    and func.attr in {"get", "setdefault"}
                    and _is_environ(func.value)
                )
            )
            name = _string_argument(node)
            if reads and name:
                names.add(name)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    return names


def shell_environment_reads(source: str) -> set[str]:
    """Upper-case variables a shell script uses without assigning them itself: the ones the
    environment gives it (`${PORT:-8000}`, `$WORKER_QUEUES`)."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", code))
    assigned = set(
        re.findall(r"^\s*(?:export\s+|local\s+|readonly\s+)?([A-Z_][A-Z0-9_]*)=", code, re.M)
    )
    assigned |= set(re.findall(r"\bfor\s+([A-Z_][A-Z0-9_]*)\s+in\b", code))
    return used - assigned - SHELL_SPECIAL


def environment_reads() -> dict[str, set[str]]:
    """Every variable read by the settings (annotate/settings/) and the bin/ scripts, with the
    files that read it."""
    readers: dict[str, set[str]] = {}
    sources = [
        (path, python_environment_reads(path.read_text(encoding="utf-8")))
        for path in sorted((ROOT / "annotate" / "settings").glob("*.py"))
    ]
    for script in sorted((ROOT / "bin").iterdir()):
        if script.is_file():
            sources.append((script, shell_environment_reads(script.read_text(encoding="utf-8"))))
    for path, names in sources:
        for name in names:
            readers.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return readers


def documented_variables() -> list[str]:
    names = []
    for cells in table_rows(readme_section("Configuration")):
        names += re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
    return names


def test_the_parsers_find_what_they_should() -> None:
    # A parser that found nothing would make the comparison below pass vacuously.
    python = python_environment_reads(
        'A = env("A", default=1)\nB = env.int("B")\nC = os.environ["C"]\n'
        'D = os.environ.get("D")\nE = os.getenv("E")\nF = other("F")\n'
    )
    assert python == {"A", "B", "C", "D", "E"}
    shell = shell_environment_reads(
        'PY=${PYTHON:-python}\n"$PY" x --n "${WORKERS:-2}" ${QUEUES:+--q "$QUEUES"} "$@"\n'
        "# $COMMENTED\nfor ITEM in a b; do echo $ITEM; done\n"
    )
    assert shell == {"PYTHON", "WORKERS", "QUEUES"}
    reads = environment_reads()
    assert {"DATABASE_URL", "REAGGREGATE_SECONDS", "ML_ARCH"} <= reads.keys()
    assert {"WEB_WORKERS", "WORKER_QUEUES", "PYTHON"} <= reads.keys()


def test_every_variable_read_is_in_the_configuration_table() -> None:
    documented = set(documented_variables())
    missing = {
        name: sorted(files) for name, files in environment_reads().items() if name not in documented
    }
    assert not missing, f"add these variables to the README's configuration table: {missing}"


def test_every_variable_in_the_configuration_table_is_read() -> None:
    documented = documented_variables()
    assert documented, "the README's configuration table lists no variables"
    duplicates = sorted({name for name in documented if documented.count(name) > 1})
    assert not duplicates, f"variables listed twice in the configuration table: {duplicates}"
    stale = sorted(set(documented) - environment_reads().keys())
    assert not stale, (
        f"nothing in annotate/settings/ or bin/ reads these documented variables: {stale}"
    )


# --- API ----------------------------------------------------------------------------------------


def normalise_path(path: str) -> str:
    """`/api/projects/{project_id}/` and `/api/projects/{id}/` are one path."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented_operations() -> list[tuple[str, str]]:
    operations = []
    for cells in table_rows(readme_section("API")):
        method, path = cells[0].strip("`").upper(), cells[1].strip("`")
        assert re.fullmatch(r"[A-Z]+", method) and path.startswith("/"), (
            f"an API table row must start with `METHOD` | `/path`: {cells[:2]}"
        )
        operations.append((method, normalise_path(path)))
    return operations


@pytest.fixture(scope="module")
def schema_operations() -> set[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    http_methods = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
    return {
        (method.upper(), normalise_path(path))
        for path, item in schema["paths"].items()
        for method in item
        if method in http_methods
    }


def test_every_api_operation_is_a_row_of_the_readme(
    schema_operations: set[tuple[str, str]],
) -> None:
    assert len(schema_operations) > 10  # the schema really was generated
    missing = sorted(schema_operations - set(documented_operations()))
    assert not missing, f"add these operations to the README's API table: {missing}"


def test_every_row_of_the_readme_is_an_api_operation(
    schema_operations: set[tuple[str, str]],
) -> None:
    documented = documented_operations()
    duplicates = sorted({op for op in documented if documented.count(op) > 1})
    assert not duplicates, f"operations listed twice in the README's API table: {duplicates}"
    stale = sorted(set(documented) - schema_operations)
    assert not stale, f"the README's API table lists operations the schema lacks: {stale}"


# --- layout -------------------------------------------------------------------------------------


def documented_modules() -> set[str]:
    """Paths named in the layout block: a line `folder/` starts a folder, and each indented line
    under it names an entry of that folder (`serving.py`, `web`, `migrations/`)."""
    section = readme_section("Development")
    block = re.search(r"### Layout.*?```\n(.*?)```", section, re.S)
    assert block, "the README's Development section has no Layout code block"
    modules, folder = set(), None
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        entry = line.split()[0]
        if not line.startswith(" "):
            folder = entry.rstrip("/")
        elif folder is not None:
            modules.add(f"{folder}/{entry.rstrip('/')}")
    return modules


def existing_modules() -> set[str]:
    modules = set()
    for folder in LAYOUT_FOLDERS:
        base = ROOT / folder
        for path in base.iterdir():
            if path.name == "__init__.py" or path.name.startswith("."):
                continue
            if (folder == "bin" and path.is_file()) or path.suffix == ".py":
                modules.add(str(path.relative_to(ROOT)))
        if folder == "tests":
            for path in base.rglob("*.py"):
                if path.name != "__init__.py":
                    modules.add(str(path.relative_to(ROOT)))
    return modules


def test_the_layout_names_every_module_and_only_modules_that_exist() -> None:
    documented, existing = documented_modules(), existing_modules()
    assert "annotate/services/serving.py" in existing  # the walk found the tree
    missing = sorted(existing - documented)
    assert not missing, f"add a line for each of these modules to the README's Layout: {missing}"
    stale = sorted(
        path
        for path in documented - existing
        if not (ROOT / path).is_dir()  # folders such as annotate/migrations/ are named as such
    )
    assert not stale, f"the README's Layout names modules that do not exist: {stale}"
