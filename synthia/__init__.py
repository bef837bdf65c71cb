"""Libraries behind train_mlx.py: dataset validation, rendering and loss masks, the training worker."""
