// Read by the test that checks which ws express-ws hands to routes in this project.
process.env.EXPRESS_ACTORS_TEST_WS = "8";
