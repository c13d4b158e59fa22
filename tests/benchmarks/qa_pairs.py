"""(prediction, gold) pairs for the QA-metric parity tests: answers of HotpotQA-like questions and the ways
an agent's answer varies (case, punctuation, articles, extra or missing words, yes/no, list-like golds)."""
from __future__ import annotations

GOLDS = ["Washington, D.C.", "Barack Obama", "the Eiffel Tower", "yes", "no", "1969", "Paris", "New York City",
         "J. R. R. Tolkien", "Saint-Exupéry", "The Beatles", "U.S. Navy", "3,000", "Dr. Seuss", "an apple",
         "Apollo 11", "Mount Everest", "World War II", "O'Neill", "St. Louis, Missouri", "1.5 million",
         "the United Kingdom", "Ford Motor Company", "Leonardo da Vinci", "Rock 'n' roll", "Harry Potter",
         "Toronto Maple Leafs", "A Tale of Two Cities", "Nobel Prize in Physics", "Chicago Bulls",
         "[Paris, Lyon]", "[Obama, Barack Obama]", "Queen Elizabeth II", "South Korea", "AC/DC",
         "Los Angeles", "Michael Jordan", "ice hockey", "The Godfather", "2nd"]
VARIANTS = [
    lambda g: g,
    lambda g: g.lower(),
    lambda g: g.replace(".", "").replace(",", ""),
    lambda g: "the " + g,
    lambda g: g + " (born 1950)",
    lambda g: g.split()[-1] if " " in g else g + "s",
    lambda g: g.upper() + ".",
]
PAIRS: list[tuple[str, str | list[str]]] = [(v(g), g) for g in GOLDS for v in VARIANTS] + [
    ("yes", "no"), ("no", ["yes", "no"]), ("Yes.", "yes"), ("noanswer", "noanswer"), ("yes it is", "yes"),
    ("", "Paris"), ("Paris", ""), ("Paris", []), ("Washington DC", ["Washington, D.C.", "DC"]),
    ("10", "1"), ("1 0", "10"),
]
