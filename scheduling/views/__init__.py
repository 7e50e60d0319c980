"""Server-rendered pages: one module per person who uses them (desk, therapist, driver,
manager's reports), plus what they share. Every action calls the same service as the
API; a domain error is shown next to the field or at the top of the page, in the
service's own words."""
