"""Training the face generators: what a run is (config), its data and degradations (data,
degrade, photos), losses, the loop, and building a model's int8 file (quantize)."""
