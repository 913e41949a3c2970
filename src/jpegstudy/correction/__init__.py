"""Artifact-correction networks (QGAC, ARCNN, IDCN) as plain torch modules, and loading their checkpoints."""
