"""Placeholder: filled in by the runs work."""

from flask import Blueprint

bp = Blueprint("runs", __name__)
