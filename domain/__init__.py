"""Domain types shared by the API, the workflows and the activities."""
