"""The names of the networks (``shared.nets`` builds them), importable without torch: the dashboard's forms
offer and check them without loading a network library."""
from __future__ import annotations

STUDENT_NAMES = ("student-seed", "student", "student-dilated", "student-s2d", "student-s2d-dilated",
                 "student-s2d-hint", "student-s2d-wiener", "student-s2d-wbank", "student-s2d-wbank-luma",
                 "student-s2d-wbank-lean", "student-s2d-wbank-shape", "student-s2d-wbank-shape-cov")
TEACHERS = ("teacher", "teacher-wiener")
ARCHITECTURES = STUDENT_NAMES + TEACHERS
# The networks with a Wiener front end (``shared.nets.wiener``), whose output within FRONT_END_RADIUS pixels of a
# crop's border is made from reflected pixels: the trainer leaves that margin out of the loss.
WIENER_FRONT_END = ("student-s2d-wiener", "student-s2d-wbank", "student-s2d-wbank-luma", "student-s2d-wbank-lean",
                    "student-s2d-wbank-shape", "student-s2d-wbank-shape-cov", "teacher-wiener")
FRONT_END_RADIUS = 32
