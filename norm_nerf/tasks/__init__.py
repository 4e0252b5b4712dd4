"""Signal tasks (images, CT, MRI, occupancy) trained with one loop over the shared field core."""
