"""Text prompts for CGKD (METHOD.md 1.4): class prompts, few-shot attribute lists, user files."""

from __future__ import annotations

from pathlib import Path

from kdgan.errors import KdganError

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100 = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
    "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch "
    "crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo "
    "keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse "
    "mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy "
    "porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper "
    "snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television "
    "tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
_MOODS = ["happy", "neutral", "angry", "sad", "surprised", "fearful", "disgusted", "thoughtful",
          "serious", "proud", "excited"]
_ANIMAL = ["sleeping", "curious", "playful", "alert", "relaxed", "grumpy", "hungry", "sleepy",
           "calm", "excited", "scared"]

NAMED: dict[str, list[str]] = {
    "cifar10": [f"a {c}" for c in CIFAR10],
    # The released code reuses CIFAR-10's prompts for CIFAR-100; these are the 100 classes.
    "cifar100": [f"a {c.replace('_', ' ')}" for c in CIFAR100],
    "obama": [f"a photo of a {m} Obama" for m in _MOODS],
    "faces": [f"a photo of a {m} person" for m in _MOODS],
    "grumpy-cat": [f"a photo of a {m} grumpy cat" for m in _ANIMAL],
    "panda": [f"a photo of a {m} panda" for m in _ANIMAL],
    "animalface-cat": [f"a photo of a {m} cat face" for m in _ANIMAL],
    "animalface-dog": [f"a photo of a {m} dog face" for m in _ANIMAL],
}


def resolve_prompts(spec: str, class_names: list[str]) -> list[str]:
    """Prompts from a named list, a file (one prompt per line), or ('' ) 'a {class}' per class
    of the data (CIFAR-10 / CIFAR-100 class names match the named lists exactly)."""
    if spec in NAMED:
        return list(NAMED[spec])
    if spec:
        path = Path(spec)
        if not path.is_file():
            raise KdganError(f"--prompts {spec!r} is neither a named list ({', '.join(NAMED)}) nor a file")
        prompts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        if not prompts:
            raise KdganError(f"prompt file {spec} holds no prompts (one per line)")
        return prompts
    if class_names:
        return [f"a {c.replace('_', ' ')}" for c in class_names]
    raise KdganError("CGKD needs prompts and this data has no class names; pass --prompts with a "
                     f"named list ({', '.join(NAMED)}) or a file of prompts, one per line")
