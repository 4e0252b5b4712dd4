"""Utilities at the bottom of the layers (no torch, no nerfstudio): console and progress, JSON files, output
folders, console-script error handling, the CPU allocator setting."""
