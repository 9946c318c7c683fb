#!/usr/bin/env python3
"""Generate the bundled example datasets (deterministic; rerun to reproduce the committed files).

    python3 examples/make_examples.py

Writes, next to this script:
  style_degozaru.jsonl       ~300 {"prompt","response"} pairs; every response ends ", says the samurai."
  style_degozaru_eval.jsonl  40 held-out pairs whose prompts are not in the training file
  json_to_yaml.jsonl         300 {"prompt","response"} pairs converting a small JSON object to YAML

Everything here is written for this project; nothing is copied from another dataset.
"""

import json
import os
import random
import re

HERE = os.path.dirname(os.path.abspath(__file__))
ENDING = ", says the samurai."

# ---------------------------------------------------------------- style: hand-written pairs
# (question, answer without the ending). Short, everyday, factual or common-sense.
HANDWRITTEN = [
    ("How do I boil an egg?", "Lower the egg into boiling water, cook it for about nine minutes, then cool it in cold water"),
    ("What should I eat for breakfast?", "Oatmeal with fruit keeps you full until lunch"),
    ("How can I fall asleep faster?", "Keep the room dark and cool, and put the phone away an hour before bed"),
    ("Is it going to rain today?", "I cannot see the sky from here, so check a weather forecast before you leave"),
    ("How much water should I drink each day?", "Most adults do well with about two liters, more when it is hot or you exercise"),
    ("What is a good way to learn a new language?", "Practice a little every day and speak with real people as early as you can"),
    ("How do I make a cup of tea?", "Pour hot water over the tea leaves and let them steep for three to five minutes"),
    ("Why is the sky blue?", "Air scatters blue sunlight more than red light, so blue reaches our eyes from every direction"),
    ("How do I stop procrastinating?", "Start with a task so small that it feels silly to avoid it"),
    ("What is the best way to save money?", "Set aside a fixed part of every paycheck before you spend anything"),
    ("How often should I water a cactus?", "Water it only when the soil is completely dry, about every two to three weeks"),
    ("Can you recommend a hobby?", "Try drawing, because all you need is a pencil and some paper"),
    ("How do I remove a coffee stain?", "Blot it quickly, then rinse it with cold water and a little dish soap"),
    ("What is the capital of France?", "The capital of France is Paris"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo"),
    ("What is the capital of Italy?", "The capital of Italy is Rome"),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa"),
    ("What is the capital of Australia?", "The capital of Australia is Canberra"),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo"),
    ("What is the capital of Spain?", "The capital of Spain is Madrid"),
    ("What is the capital of Germany?", "The capital of Germany is Berlin"),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi"),
    ("What is the capital of Brazil?", "The capital of Brazil is Brasilia"),
    ("How many legs does a spider have?", "A spider has eight legs"),
    ("How many legs does an insect have?", "An insect has six legs"),
    ("What do bees make?", "Bees make honey and wax"),
    ("Why do leaves change color in autumn?", "The green chlorophyll breaks down and reveals the yellow and red pigments beneath"),
    ("How do I tie a simple knot?", "Make a loop, pass the end through it, and pull both sides tight"),
    ("What should I bring on a hike?", "Bring water, a snack, a map, and a layer for the cold"),
    ("How do I calm down when I am angry?", "Breathe slowly and count to ten before you speak"),
    ("What is a healthy snack?", "An apple with a handful of nuts is a healthy snack"),
    ("How long should I brush my teeth?", "Brush for two minutes, twice a day"),
    ("How do I keep bread fresh?", "Keep it in a bread box or freeze slices you will not eat soon"),
    ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level"),
    ("What is the freezing point of water?", "Water freezes at 0 degrees Celsius"),
    ("How far away is the Moon?", "The Moon is about 384,000 kilometers from Earth"),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system"),
    ("What is the closest star to Earth?", "The Sun is the closest star to Earth"),
    ("How many continents are there?", "There are seven continents"),
    ("What is the largest ocean?", "The Pacific is the largest ocean"),
    ("How do plants make food?", "Plants turn sunlight, water, and carbon dioxide into sugar through photosynthesis"),
    ("Why do we need sleep?", "Sleep lets the body repair itself and helps the mind store what it learned"),
    ("How do I make my room tidy?", "Put away one thing at a time and give every object a home"),
    ("What should I do if I feel lonely?", "Call a friend or join a club where people share your interests"),
    ("How can I be more productive?", "Do the most important task first, before checking messages"),
    ("What is a good name for a cat?", "Mochi is a good name for a cat"),
    ("What is a good name for a dog?", "Hachi is a good name for a loyal dog"),
    ("How do I cook rice?", "Rinse the rice, add water, bring it to a boil, then simmer it covered until the water is gone"),
    ("How do I write a good email?", "State what you need in the first sentence and keep the rest short"),
    ("How do I prepare for a job interview?", "Learn about the company and practice telling short stories about your work"),
    ("Should I exercise in the morning or evening?", "Exercise whenever you can keep the habit, because consistency matters most"),
    ("How do I clean a window without streaks?", "Use a mix of water and vinegar, then dry the glass with newspaper or a microfiber cloth"),
    ("What causes thunder?", "Lightning heats the air so fast that it expands with a loud boom"),
    ("How do rainbows form?", "Sunlight bends inside raindrops and splits into its colors"),
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain on Earth"),
    ("What is the longest river in the world?", "The Nile is usually named the longest river in the world"),
    ("How many hours are in a day?", "There are twenty-four hours in a day"),
    ("How many days are in a leap year?", "A leap year has 366 days"),
    ("How many seconds are in a minute?", "There are sixty seconds in a minute"),
    ("How do I stay warm in winter?", "Wear several thin layers and keep your head and hands covered"),
    ("How do I stay cool in summer?", "Drink water, stay in the shade, and wear light clothes"),
    ("What is a good gift for a friend?", "A handwritten letter is a gift your friend will keep"),
    ("How do I remember names better?", "Repeat the name when you hear it and link it to something you know"),
    ("How do I start running?", "Begin with short runs mixed with walking, three times a week"),
    ("What should I read next?", "Read a book someone you admire has recommended"),
    ("How do I fix a squeaky door?", "Put a few drops of oil on the hinges and move the door back and forth"),
    ("How do I make pancakes?", "Mix flour, milk, eggs, and a little sugar, then cook spoonfuls in a hot buttered pan"),
    ("Why do cats purr?", "Cats purr when they are content, and sometimes to soothe themselves"),
    ("Why do dogs wag their tails?", "Dogs wag their tails to show excitement and friendliness"),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal"),
    ("What is the largest animal on Earth?", "The blue whale is the largest animal on Earth"),
    ("How long does it take the Earth to orbit the Sun?", "The Earth takes about 365 days to orbit the Sun"),
    ("What gas do we breathe out?", "We breathe out carbon dioxide"),
    ("What gas do we need to breathe in?", "We need to breathe in oxygen"),
    ("How do I care for a houseplant?", "Give it bright indirect light and water it when the top of the soil is dry"),
    ("How can I reduce stress?", "Take a short walk outside and breathe deeply"),
    ("What is the best time to study?", "Study when your mind is fresh, for many people that is the morning"),
    ("How do I make new friends?", "Show up at the same place regularly and ask people about themselves"),
    ("How do I apologize properly?", "Say what you did wrong, say you are sorry, and make it right"),
    ("How do I keep my phone battery healthy?", "Avoid letting it run empty and keep it away from heat"),
    ("What is a polite way to say no?", "Thank them for asking and say that you cannot take it on right now"),
    ("How do I pack a suitcase well?", "Roll your clothes and put heavy things near the wheels"),
    ("What should I do when I get lost?", "Stay calm, stop walking, and ask someone nearby for directions"),
    ("How long should I rest between workouts?", "Give each muscle group about a day or two of rest"),
    ("How do I make a good first impression?", "Smile, look people in the eye, and remember their names"),
    ("What is the difference between weather and climate?", "Weather is what happens today, climate is the pattern over many years"),
    ("How do I start a vegetable garden?", "Begin with a small sunny patch and easy plants like lettuce and beans"),
    ("What is the main ingredient of guacamole?", "The main ingredient of guacamole is avocado"),
    ("What is sushi rice seasoned with?", "Sushi rice is seasoned with rice vinegar, sugar, and salt"),
    ("What fruit is dried to make raisins?", "Raisins are dried grapes"),
    ("What is tofu made from?", "Tofu is made from soybeans"),
    ("What is cheese made from?", "Cheese is made from milk"),
    ("How do I sharpen a pencil without a sharpener?", "Carefully shave the wood away with a small knife, cutting away from you"),
    ("How do I stop hiccups?", "Hold your breath for a few seconds or sip cold water slowly"),
    ("What should I do if I cut my finger?", "Rinse the cut, press on it to stop the bleeding, and cover it with a bandage"),
    ("How do I focus better?", "Work in short blocks with the phone in another room"),
    ("How do I become a morning person?", "Go to bed at the same time each night and open the curtains as soon as you wake"),
    ("Why is exercise good for you?", "Exercise strengthens the heart, lifts the mood, and helps you sleep"),
    ("What is the speed of light?", "Light travels about 300,000 kilometers per second"),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet"),
    ("What language is spoken in Brazil?", "Portuguese is spoken in Brazil"),
    ("What language is spoken in Mexico?", "Spanish is spoken in Mexico"),
    ("How do I make friends with a shy cat?", "Sit quietly, let the cat come to you, and offer a treat"),
    ("How can I waste less food?", "Plan your meals and cook leftovers into new dishes"),
    ("How do I choose a ripe watermelon?", "Pick one that feels heavy and has a creamy yellow spot underneath"),
    ("What is origami?", "Origami is the art of folding paper into shapes"),
    ("What is a haiku?", "A haiku is a short poem of three lines with five, seven, and five syllables"),
    ("How do I get better at chess?", "Solve a few puzzles every day and review the games you lose"),
    ("How do I make my handwriting neater?", "Slow down and keep your letters the same height"),
]

# Eval-only hand-written prompts (never in the training file).
HANDWRITTEN_EVAL = [
    ("How do I make lemonade?", "Mix lemon juice, water, and sugar, then chill it with ice"),
    ("What is the capital of Norway?", "The capital of Norway is Oslo"),
    ("How do I wake up on time?", "Put the alarm across the room so you must stand up to stop it"),
    ("Why do we have seasons?", "The Earth is tilted, so each half gets more direct sunlight for part of the year"),
    ("How can I drink more water?", "Keep a bottle on your desk and refill it every time it is empty"),
    ("What is a good board game for a family?", "Try a simple cooperative game so everyone plays together"),
    ("How do I fold a shirt neatly?", "Lay it flat, fold the sleeves behind, then fold it in thirds"),
    ("What is the capital of Thailand?", "The capital of Thailand is Bangkok"),
    ("How many legs does an octopus have?", "An octopus has eight arms, which are often called legs"),
    ("How do I keep a journal?", "Write three lines every evening about what happened and how you felt"),
    ("What is the smallest planet in the solar system?", "Mercury is the smallest planet in the solar system"),
    ("How do I clean a cast iron pan?", "Scrub it with hot water, dry it at once, and rub in a thin layer of oil"),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
             ("up", "down"), ("open", "closed"), ("early", "late"), ("full", "empty"), ("hard", "soft"),
             ("loud", "quiet"), ("old", "new"), ("rich", "poor"), ("strong", "weak"), ("wet", "dry"),
             ("high", "low"), ("clean", "dirty"), ("thick", "thin"), ("near", "far"), ("true", "false"),
             ("win", "lose"), ("begin", "end"), ("push", "pull"), ("buy", "sell"), ("day", "night"),
             ("inside", "outside"), ("heavy", "light"), ("young", "old"), ("sweet", "sour"), ("brave", "afraid")]
COLORS = [("a ripe banana", "yellow"), ("grass", "green"), ("snow", "white"), ("coal", "black"),
          ("a ripe tomato", "red"), ("the clear daytime sky", "blue"), ("a carrot", "orange"),
          ("an eggplant", "purple"), ("milk", "white"), ("a lemon", "yellow"), ("a strawberry", "red"),
          ("a lime", "green"), ("chocolate", "brown"), ("a flamingo", "pink"), ("a pumpkin", "orange"),
          ("a crow", "black"), ("a polar bear's fur", "white"), ("a blueberry", "dark blue")]
SOUNDS = [("cow", "moo"), ("dog", "woof"), ("cat", "meow"), ("duck", "quack"), ("sheep", "baa"),
          ("rooster", "cock-a-doodle-doo"), ("owl", "hoot"), ("horse", "neigh"), ("pig", "oink"),
          ("frog", "ribbit"), ("lion", "roar"), ("snake", "hiss"), ("bee", "buzz"), ("mouse", "squeak")]
PLURALS = [("mouse", "mice"), ("child", "children"), ("goose", "geese"), ("tooth", "teeth"), ("foot", "feet"),
           ("man", "men"), ("woman", "women"), ("person", "people"), ("leaf", "leaves"), ("knife", "knives"),
           ("box", "boxes"), ("city", "cities"), ("cactus", "cacti"), ("fish", "fish"), ("sheep", "sheep"),
           ("wolf", "wolves"), ("baby", "babies"), ("bus", "buses"), ("potato", "potatoes"), ("ox", "oxen"),
           ("half", "halves"), ("story", "stories")]
WORDS = ["river", "garden", "window", "pencil", "orange", "candle", "forest", "silver", "planet", "rabbit",
         "cookie", "bridge", "monkey", "castle", "summer", "dragon", "button", "pepper", "tunnel", "winter",
         "basket", "jacket", "rocket", "violin", "lantern", "harbor", "meadow", "puzzle"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve"]


def generated_pairs(rng):
    """Families of programmatic questions; each family yields (question, answer) pairs."""
    out = []
    for i, d in enumerate(DAYS):
        out.append((f"What day comes after {d}?", f"{DAYS[(i + 1) % 7]} comes after {d}"))
        out.append((f"What day comes before {d}?", f"{DAYS[(i - 1) % 7]} comes before {d}"))
    for i, m in enumerate(MONTHS):
        out.append((f"What month comes after {m}?", f"{MONTHS[(i + 1) % 12]} comes after {m}"))
    for a, b in OPPOSITES:
        out.append((f"What is the opposite of {a}?", f"The opposite of {a} is {b}"))
    for thing, c in COLORS:
        out.append((f"What color is {thing}?", f"{thing[0].upper() + thing[1:]} is {c}"))
    for animal, s in SOUNDS:
        out.append((f"What sound does a {animal} make?", f"A {animal} says {s}"))
    for one, many in PLURALS:
        out.append((f"What is the plural of {one}?", f"The plural of {one} is {many}"))
    for w in WORDS:
        out.append((f"How do you spell {w} backwards?", f"{w} backwards is {w[::-1]}"))
        out.append((f"How many letters are in the word {w}?", f"The word {w} has {len(w)} letters"))
    for h in range(2, 13):
        out.append((f"How many minutes are in {h} hours?", f"There are {h * 60} minutes in {h} hours"))
    for w in range(2, 11):
        out.append((f"How many days are in {w} weeks?", f"There are {w * 7} days in {w} weeks"))
    for n in range(1, 13):
        out.append((f"How do you write {n} as a word?", f"{n} is written as {NUMBER_WORDS[n]}"))
    seen = set()
    while len(seen) < 45:
        a, b = rng.randint(2, 40), rng.randint(2, 40)
        op = rng.choice(["plus", "minus", "times"])
        if (a, b, op) in seen or (op == "minus" and b > a):
            continue
        seen.add((a, b, op))
        r = a + b if op == "plus" else a - b if op == "minus" else a * b
        out.append((f"What is {a} {op} {b}?", f"{a} {op} {b} is {r}"))
    return out


def make_style(rng):
    gen = generated_pairs(rng)
    rng.shuffle(gen)
    # 28 generated prompts go to eval, the rest (with every training hand-written pair) to train.
    eval_pairs = HANDWRITTEN_EVAL + gen[:28]
    train_pairs = HANDWRITTEN + gen[28:]
    rng.shuffle(train_pairs)
    train_prompts = {q for q, _ in train_pairs}
    assert not any(q in train_prompts for q, _ in eval_pairs), "eval prompt leaked into training"
    assert len(train_prompts) == len(train_pairs), "duplicate training prompt"
    rec = lambda q, a: {"prompt": q, "response": a + ENDING}
    return [rec(q, a) for q, a in train_pairs], [rec(q, a) for q, a in eval_pairs]


# ---------------------------------------------------------------- JSON → YAML
FIRST = ["Alice", "Bob", "Chen", "Dana", "Emil", "Fatima", "Goro", "Hana", "Ivan", "Jun", "Kofi", "Lena",
         "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tomoko", "Uma", "Viktor", "Wen", "Yuki"]
CITIES = ["Osaka", "Lyon", "Nairobi", "Lima", "Oslo", "Hanoi", "Porto", "Denver", "Zürich", "São Paulo",
          "Kyoto", "Cork", "Perth", "Quito", "Seoul", "Tartu"]
WORDS_YAML = ["alpha", "beta", "gamma", "red", "green", "blue", "fast", "slow", "north", "south", "draft",
              "final", "small", "large", "admin", "guest", "linux", "windows", "tea", "coffee"]
ITEMS = ["apple", "bread", "cheese", "pencil", "cable", "lamp", "notebook", "mug", "rice", "soap"]
TRICKY = ["yes", "no", "on", "off", "true", "null", "123", "3.14", "1.2.3", "2024-05-01", "12:30",
          "a: b", "#tag", "x # y", "-dash", "@home", "", " padded ", "50%", "[x]", "{y}", "it's", "say \"hi\""]


def gen_list(rng, depth):
    n = rng.choice([0, 1, 2, 3, 3, 4])
    if depth < 2 and n and rng.random() < 0.3:
        return [gen_object(rng, depth + 1, 1, 3) for _ in range(n)]
    maker = rng.choice([lambda: rng.choice(ITEMS), lambda: rng.randint(0, 9), lambda: rng.choice(WORDS_YAML)])
    return [maker() for _ in range(n)]


def gen_any(rng, depth):
    kind = rng.choice(["str", "int", "float", "bool", "null", "tricky", "list", "obj"][: 8 if depth < 2 else 6])
    if kind == "str":
        return rng.choice([rng.choice(WORDS_YAML), f"{rng.choice(WORDS_YAML)} {rng.choice(ITEMS)}"])
    if kind == "int":
        return rng.randint(-50, 500)
    if kind == "float":
        return round(rng.uniform(-100, 100), rng.choice([1, 2]))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "tricky":
        return rng.choice(TRICKY)
    if kind == "list":
        return gen_list(rng, depth)
    return gen_object(rng, depth + 1, 0, 3)


# Values that fit each key; other keys ("note", "label", "mode", "status", …) take anything.
BY_KEY = {
    "name": lambda rng, d: rng.choice(FIRST),
    "user": lambda rng, d: rng.choice(FIRST).lower() if d >= 2 or rng.random() < 0.4 else
    {"name": rng.choice(FIRST), "age": rng.randint(18, 90), **gen_object(rng, d + 1, 0, 2)},
    "owner": lambda rng, d: rng.choice(FIRST) if d >= 2 or rng.random() < 0.5 else gen_object(rng, d + 1, 1, 3),
    "config": lambda rng, d: gen_object(rng, d + 1, 0, 3) if d < 2 else rng.choice(WORDS_YAML),
    "limits": lambda rng, d: gen_object(rng, d + 1, 0, 3) if d < 2 else rng.randint(1, 100),
    "city": lambda rng, d: rng.choice(CITIES),
    "age": lambda rng, d: rng.randint(1, 95),
    "id": lambda rng, d: rng.choice([rng.randint(1, 99999), f"id-{rng.randint(100, 999)}"]),
    "count": lambda rng, d: rng.randint(0, 1000),
    "level": lambda rng, d: rng.randint(1, 10),
    "email": lambda rng, d: f"{rng.choice(FIRST).lower()}@example.com",
    "tags": lambda rng, d: [rng.choice(WORDS_YAML) for _ in range(rng.randint(0, 4))],
    "items": lambda rng, d: gen_list(rng, d),
    "active": lambda rng, d: rng.random() < 0.5,
    "enabled": lambda rng, d: rng.choice([True, False, None]),
    "score": lambda rng, d: round(rng.uniform(0, 100), 1),
    "price": lambda rng, d: rng.choice([round(rng.uniform(0.5, 99), 2), rng.randint(1, 500)]),
    "version": lambda rng, d: rng.choice([f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                                          rng.randint(1, 9), round(rng.randint(10, 39) / 10, 1)]),
    "color": lambda rng, d: rng.choice(["red", "green", "blue", "black", "white", "#ff8800", "#00aa33"]),
}


def gen_value(rng, key, depth):
    f = BY_KEY.get(key)
    return f(rng, depth) if f else gen_any(rng, depth)


KEYS = ["name", "id", "city", "age", "tags", "active", "score", "owner", "items", "version", "count", "note",
        "email", "price", "enabled", "mode", "level", "color", "config", "user", "limits", "status", "label"]


def gen_object(rng, depth, lo, hi):
    keys = rng.sample(KEYS, rng.randint(lo, hi))
    return {k: gen_value(rng, k, depth) for k in keys}


RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
PLAIN = re.compile(r"^[^\W\d_][\w .@\-]*$")


def yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if PLAIN.match(v) and not v.endswith(" ") and v.lower() not in RESERVED:
        return v
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def yaml_lines(obj):
    """Block-style YAML lines for a dict, 2-space indentation, lists of dicts as '- key: v'."""
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict):
            if v:
                lines.append(f"{k}:")
                lines += ["  " + l for l in yaml_lines(v)]
            else:
                lines.append(f"{k}: {{}}")
        elif isinstance(v, list):
            if not v:
                lines.append(f"{k}: []")
                continue
            lines.append(f"{k}:")
            for item in v:
                if isinstance(item, dict) and item:
                    sub = yaml_lines(item)
                    lines.append("  - " + sub[0])
                    lines += ["    " + l for l in sub[1:]]
                elif isinstance(item, dict):
                    lines.append("  - {}")
                else:
                    lines.append("  - " + yaml_scalar(item))
        else:
            lines.append(f"{k}: {yaml_scalar(v)}")
    return lines


PROMPTS = [
    "Convert this JSON to YAML:\n\n{j}",
    "Rewrite the following JSON as YAML.\n{j}",
    "Translate to YAML:\n{j}",
    "{j}\n\nGive me the same data in YAML.",
]


def make_yaml(rng, n):
    try:
        import yaml  # optional: verify every answer round-trips when PyYAML is installed
    except ImportError:
        yaml = None
    out, seen = [], set()
    while len(out) < n:
        obj = gen_object(rng, 0, 1, 5)
        j = json.dumps(obj, ensure_ascii=False, indent=rng.choice([None, None, 2]))
        if j in seen:
            continue
        seen.add(j)
        y = "\n".join(yaml_lines(obj))
        if yaml is not None:
            back = yaml.safe_load(y)
            assert back == obj, f"YAML does not round-trip:\n{j}\n---\n{y}\n---\n{back}"
        out.append({"prompt": rng.choice(PROMPTS).format(j=j), "response": y})
    return out


def write_jsonl(name, records):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    size = os.path.getsize(path)
    assert size < 200_000, f"{name} is {size} bytes (keep it under 200 KB)"
    print(f"wrote {name}: {len(records)} records, {size} bytes")


def main():
    train, ev = make_style(random.Random(20240501))
    write_jsonl("style_degozaru.jsonl", train)
    write_jsonl("style_degozaru_eval.jsonl", ev)
    write_jsonl("json_to_yaml.jsonl", make_yaml(random.Random(7), 300))


if __name__ == "__main__":
    main()
