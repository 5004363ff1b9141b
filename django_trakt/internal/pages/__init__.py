"""What the site shows: watchlists, images and their views."""
