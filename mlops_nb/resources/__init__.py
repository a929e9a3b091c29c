"""What runs use and may use: usage, budgets, the quota widget."""
