"""The built-in tasks: small instruction/answer sets a tiny model can learn, and the prompt template."""

from __future__ import annotations

import pandas as pd

PROMPT_TEMPLATE = "### Instruction:\n{prompt}\n### Response:\n"
EOS_TOKEN = "<|endoftext|>"
UPPERCASE_WORDS = (
    "garden",
    "river",
    "planet",
    "window",
    "silver",
    "forest",
    "candle",
    "rocket",
    "pepper",
    "castle",
    "orange",
    "bridge",
    "summer",
    "pencil",
    "basket",
    "dragon",
    "jacket",
    "marble",
    "violin",
    "meadow",
    "harbor",
    "lantern",
    "tunnel",
    "falcon",
    "velvet",
)
REVERSE_WORDS = (
    "lemon",
    "table",
    "cloud",
    "stone",
    "music",
    "tiger",
    "apple",
    "piano",
    "ocean",
    "flame",
    "grape",
    "horse",
    "chair",
    "brick",
    "light",
    "sugar",
    "zebra",
    "crown",
    "mango",
    "honey",
    "storm",
    "pearl",
    "cabin",
    "eagle",
    "olive",
)
CAPITALS = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Russia", "Moscow"),
    ("Thailand", "Bangkok"),
    ("Argentina", "Buenos Aires"),
    ("Hungary", "Budapest"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"),
)
SENTIMENTS = (  # alternating labels, so every-fifth-row evaluation sees both
    ("The soup was wonderful.", "positive"),
    ("The soup was cold and bland.", "negative"),
    ("I loved every minute of the film.", "positive"),
    ("I hated the ending of the film.", "negative"),
    ("The staff were friendly and helpful.", "positive"),
    ("The staff were rude to us.", "negative"),
    ("This phone works perfectly.", "positive"),
    ("This phone broke after a day.", "negative"),
    ("What a delightful little book.", "positive"),
    ("What a boring and tedious book.", "negative"),
    ("The concert was amazing.", "positive"),
    ("The concert was a total disaster.", "negative"),
    ("My new shoes are very comfortable.", "positive"),
    ("My new shoes hurt my feet.", "negative"),
    ("The hotel room was spotless.", "positive"),
    ("The hotel room was dirty.", "negative"),
    ("A brilliant and moving story.", "positive"),
    ("A dull and confusing story.", "negative"),
    ("The garden looks beautiful in spring.", "positive"),
    ("The train was late again.", "negative"),
    ("Great value and fast delivery.", "positive"),
    ("Terrible service and slow delivery.", "negative"),
    ("The teacher explained everything clearly.", "positive"),
    ("The lecture was painfully long.", "negative"),
    ("I enjoyed the hike very much.", "positive"),
)
UNIT_CONVERSIONS = (
    ("km", "metres", 1000, "m"),
    ("kg", "grams", 1000, "g"),
    ("m", "centimetres", 100, "cm"),
    ("hours", "minutes", 60, "min"),
    ("minutes", "seconds", 60, "s"),
)
ANTONYMS = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("up", "down"),
    ("open", "closed"),
    ("early", "late"),
    ("full", "empty"),
    ("hard", "soft"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("young", "old"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("high", "low"),
    ("long", "short"),
    ("thick", "thin"),
    ("clean", "dirty"),
    ("near", "far"),
    ("inside", "outside"),
    ("win", "lose"),
    ("first", "last"),
    ("push", "pull"),
    ("buy", "sell"),
    ("day", "night"),
)
ANSWER_FORMATS = {  # the fixed answer shape of each built-in task (format match before vs after)
    "arithmetic": r"Answer: \d+",
    "uppercase": r"[A-Z]+",
    "reverse": r"[a-z]+",
    "capital": r"[A-Z][a-z]+( [A-Z][a-z]+)*",
    "sentiment": r"positive|negative",
    "units": r"\d+ (m|g|cm|min|s)",
    "antonym": r"[a-z]+",
    "parity": r"even|odd",
}


def builtin_examples():
    """200 distinct instruction→response pairs (8 task types × 25), generated without randomness."""
    rows = []
    for i in range(25):
        a, b = 12 + (i * 17) % 70, 5 + (i * 29) % 60
        rows.append(("arithmetic", f"What is {a} + {b}?", f"Answer: {a + b}"))
    for word in UPPERCASE_WORDS:
        rows.append(("uppercase", f"Write '{word}' in capital letters.", word.upper()))
    for word in REVERSE_WORDS:
        rows.append(("reverse", f"Spell '{word}' backwards.", word[::-1]))
    for country, capital in CAPITALS:
        rows.append(("capital", f"What is the capital of {country}?", capital))
    for text, label in SENTIMENTS:
        rows.append(("sentiment", f"Is this review positive or negative? {text}", label))
    for i in range(25):
        unit_from, unit_to, factor, symbol = UNIT_CONVERSIONS[
            (i + i // 5) % 5
        ]  # rotate: eval sees every unit
        value = (2, 3, 5, 7, 9)[i // 5]
        rows.append(("units", f"Convert {value} {unit_from} to {unit_to}.", f"{value * factor} {symbol}"))
    for word, opposite in ANTONYMS:
        rows.append(("antonym", f"What is the opposite of '{word}'?", opposite))
    for i in range(25):
        n = 11 + 7 * i
        rows.append(("parity", f"Is {n} even or odd?", "even" if n % 2 == 0 else "odd"))
    frame = pd.DataFrame(rows, columns=["task", "prompt", "response"])
    # Every fifth example of each task is held out: a stratified, order-based, seed-free split.
    frame["split"] = ["eval" if i % 5 == 4 else "train" for i in frame.groupby("task").cumcount()]
    return frame


def format_prompt(prompt, tokenizer=None):
    """The one prompt template for training, evaluation and generation: the tokenizer's chat template when it
    has one (instruct models: the user turn, then the assistant's header), else the plain template."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return PROMPT_TEMPLATE.format(prompt=prompt)
