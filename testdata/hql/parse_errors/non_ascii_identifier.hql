requests | where modèle == "x"
