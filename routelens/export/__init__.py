"""Route graphs leaving routelens: JSON, GraphML, SVG, PNG, self-contained HTML, notebooks."""

from .files import FORMATS, GraphFileError, OutputFileError, check_output_path, format_of, read_graph_dict, render, write_graph

__all__ = ["FORMATS", "GraphFileError", "OutputFileError", "check_output_path", "format_of", "read_graph_dict", "render",
           "write_graph"]
