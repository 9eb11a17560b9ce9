"""ActivityPub federation: actor keys, local URIs, discovery, actor and object documents."""
