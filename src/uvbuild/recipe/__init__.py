"""The recipe: its typed model, the strict YAML loader, image references."""
