"""Models: timm backbones with an 18-way head, and their pretrained-weight sources."""
