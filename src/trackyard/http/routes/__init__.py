"""HTTP endpoints, one module per API family; ``trackyard.http.app`` assembles them."""
