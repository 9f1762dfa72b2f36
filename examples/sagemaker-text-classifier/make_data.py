"""Writes the example's small offline data set: support tickets in four topics.

The tickets are generated from phrase templates (so the example needs no download), with
words shared between topics and 8% of labels flipped, so that the classifier's settings
matter and no configuration reaches 100%. ``python make_data.py`` rewrites ``data/``.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

TOPICS = {
    "billing": [
        "i was charged twice for my subscription this month",
        "the invoice shows the wrong amount",
        "please refund the payment for the annual plan",
        "my credit card was declined at checkout",
        "why did the price go up on my last bill",
        "cancel the renewal and return my money",
        "the receipt is missing the tax number",
        "upgrade to the team plan charged the full price",
    ],
    "bug": [
        "the app crashes when i open the settings page",
        "export to pdf fails with an error",
        "the page is blank after the latest update",
        "search returns nothing even for exact titles",
        "uploading a photo freezes the screen",
        "the sync stopped working on my phone",
        "buttons do not respond in dark mode",
        "the report shows the wrong totals after an update",
    ],
    "account": [
        "i cannot log in after resetting my password",
        "how do i change the email on my account",
        "two factor codes never arrive",
        "please delete my account and my data",
        "my account was locked after too many attempts",
        "add a second admin to our team account",
        "i lost access to the phone used for login",
        "merge my two accounts into one",
    ],
    "feature": [
        "it would be great to have a calendar view",
        "please add an option to export to excel",
        "could you support keyboard shortcuts",
        "we would love a dark theme for the web app",
        "allow sharing a board with people outside the team",
        "add reminders before a task is due",
        "an api for reports would help our team",
        "support for more languages in the editor",
    ],
}
FILLERS = [
    "hello",
    "hi team",
    "thanks",
    "please help",
    "asap",
    "again",
    "since yesterday",
    "on the web app",
    "on my phone",
    "for our team",
    "this is urgent",
    "any update",
]


def ticket(rng: random.Random, topic: str) -> str:
    phrase = rng.choice(TOPICS[topic]).split()
    # Drop and borrow words so that topics overlap.
    phrase = [w for w in phrase if rng.random() > 0.15]
    other = rng.choice([t for t in TOPICS if t != topic])
    phrase += rng.sample(rng.choice(TOPICS[other]).split(), k=2)
    rng.shuffle(phrase)
    return " ".join([rng.choice(FILLERS), *phrase, rng.choice(FILLERS)])


def main(folder: Path = Path(__file__).parent / "data", size: int = 1200) -> None:
    rng = random.Random(7)
    topics = list(TOPICS)
    rows = []
    for _ in range(size):
        topic = rng.choice(topics)
        label = rng.choice(topics) if rng.random() < 0.08 else topic
        rows.append((ticket(rng, topic), label))
    folder.mkdir(exist_ok=True)
    cut = int(size * 0.8)
    for name, part in (("train.csv", rows[:cut]), ("val.csv", rows[cut:])):
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(part)


if __name__ == "__main__":
    main()
