"""The HTTP face: app factory, middlewares, envelope, auth, routes and thin handlers."""
