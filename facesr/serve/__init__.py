"""`facesr serve`: the upload web app (a page and an HTTP API) that super-resolves photos and short videos."""
