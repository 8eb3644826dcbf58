"""Route graphs leaving routelens: JSON, GraphML, SVG, PNG, self-contained HTML, notebooks."""

from .files import FORMATS, GraphFileError, format_of, load_graph, render, write_graph

__all__ = ["FORMATS", "GraphFileError", "format_of", "load_graph", "render", "write_graph"]
