"""Images: recipes built into read-only root filesystems, cached by recipe digest."""

from labyard.images.build import build_image
from labyard.images.recipe import MachineNeeds, ResolvedRecipe, recipe_names, resolve
from labyard.images.store import BuiltImages, Image, find_image, list_images, remove_image

__all__ = [
    "BuiltImages",
    "Image",
    "MachineNeeds",
    "ResolvedRecipe",
    "build_image",
    "find_image",
    "list_images",
    "recipe_names",
    "remove_image",
    "resolve",
]
