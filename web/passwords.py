"""Passwords that must never be accepted, and the checks that use them.

``COMMON`` is a small bundled list (lower case) of the passwords that top every published
breach corpus, plus their usual bases. It is not a breach database: it refuses what an attacker
tries first. Variants are caught by normalising: case, digits and symbols around the word
("Password2024!"), leet substitutions ("p@ssw0rd") and repetition ("abcabcabcabc").
"""

from __future__ import annotations

import re

COMMON = frozenset(
    """
    123456 123456789 12345678 1234567890 12345678910 1234567 qwerty qwerty123 qwertyuiop
    password password1 password123 passw0rd p@ssword p@ssw0rd 111111 000000 123123 1q2w3e4r
    1q2w3e4r5t 1qaz2wsx zaq12wsx qazwsx qwertyui asdfghjkl asdfgh zxcvbnm 987654321
    0987654321 9876543210 abc123 abcd1234 iloveyou princess admin administrator welcome
    welcome1 letmein monkey dragon football baseball basketball soccer hockey master
    sunshine shadow superman batman trustno1 starwars whatever freedom michael jennifer
    jordan jordan23 hunter hunter2 charlie thomas daniel andrew joshua matthew jessica ashley
    nicole michelle amanda summer winter spring autumn secret secret123 computer internet
    samsung google facebook linkedin twitter instagram youtube microsoft apple chocolate
    cookie pokemon naruto minecraft fortnite killer ninja mustang ferrari porsche harley
    yankees liverpool chelsea arsenal barcelona realmadrid juventus lakers cowboys steelers
    eagles dolphins tigger pepper ginger buster maggie bailey cheese butterfly flower
    purple orange banana lovely loveme love lover angel angels family friends forever
    blessed jesus christ heaven qwerty1 qwerty12 passport access access14 login changeme
    default guest root toor test test123 testing temp temp123 demo user username
    streamd streaming stream livestream obsstudio twitch youtuber gamer gaming
    1111111111 0000000000 1234512345 1122334455 123454321 987654321a a123456789
    q1w2e3r4t5 q1w2e3r4 1a2b3c4d 1a2b3c4d5e aa123456 qwe123 asd123 zxc123 abcdef abcdefg
    abcdefgh abcdefghij letmein1 welcome123 admin123 administrator1 password12 password1234
    iloveyou1 princess1 sunshine1 football1 monkey123 dragon123 baseball1 superman1
    michael1 charlie1 qwertyuiop123 mypassword yourpassword nopassword newpassword
    oldpassword passwort motdepasse contrasena senha parola haslo salasana wachtwoord
    """.split()  # noqa: SIM905 - a word list reads better as text
)

_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
)
_LEET = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s",
                       "5": "s", "7": "t", "+": "t", "9": "g"})  # fmt: skip
_AROUND = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_REPEATED = re.compile(r"(.+?)\1+")


def weakness(password: str) -> str | None:
    """Why ``password`` is too guessable, or None. Messages are shown to the user."""
    lower = password.lower()
    if lower in COMMON:
        return "is one of the most common passwords; choose something less guessable"
    core = _AROUND.sub("", lower)
    for candidate in (core, core.translate(_LEET), lower.translate(_LEET)):
        if candidate in COMMON:
            return (
                "is a common password with digits, symbols or look-alike characters added; "
                "choose something less guessable"
            )
    for sequence in _SEQUENCES:
        if lower in sequence or lower in sequence[::-1]:
            return "is a keyboard or alphabet sequence; choose something less guessable"
    repeated = _REPEATED.fullmatch(lower)
    if repeated and (len(repeated.group(1)) <= 4 or repeated.group(1) in COMMON):
        return "repeats a short or common pattern; choose something less guessable"
    return None
