"""Signal tasks (images, CT, MRI, occupancy) trained with one loop over the shared field core.

``norm_nerf.tasks.run`` holds the task configs and runners; ``python -m norm_nerf.tasks <task> <flags>`` runs one
task (what ``norm-inr <task>`` and each cell of ``norm-inr table`` do).
"""
