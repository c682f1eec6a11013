-- The image creates the database `mlflow` (POSTGRES_DB); Prefect gets its own.
CREATE DATABASE prefect;
