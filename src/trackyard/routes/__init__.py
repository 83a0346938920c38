"""HTTP endpoints, one module per API family; ``trackyard.app`` assembles them."""
