"""One module per command, each exposing ``command``; kept thin: parse, call the core, render."""
