"""Tables, figures and (later) appendices, made only from metric rows."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


def template(name: str) -> str:
    """The path of a table template (rules list it as an input, so editing a template reruns its table).

    Kept free of heavy imports: the Snakefile calls it while parsing."""
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such report template")
    return str(path)
