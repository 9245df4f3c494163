"""Runtime code of the WebSocket API, deployed to Lambda with app.py."""
