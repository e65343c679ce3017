# Varnish in front of a Django site that uses ormcache's page cache with
# ORMCACHE["DOWNSTREAM"] = {"enabled": True, "surrogate_key_header": "xkey", "purgers": [
#     {"class": "ormcache.purge.HTTPPurger", "urls": ["http://127.0.0.1:6081/"]}]}
#
# Needs the xkey vmod: `apt-get install varnish varnish-modules` (Debian/Ubuntu).
# ormcache's test suite runs this very file (tests/e2e/test_varnish.py).
vcl 4.1;

import xkey;

backend django {
    .host = "127.0.0.1";
    .port = "8000";
}

# Who may purge: the Django processes. Keep it as narrow as your network allows.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "No xkey-purge header"));
        }
        # ormcache sends the surrogate keys of the tables a commit wrote, space-separated.
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone + " objects"));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Requests that may be one visitor's: credentials, a session (maybe logged in),
    # pending messages. The backend answers them; Varnish neither serves nor stores.
    if (req.http.Authorization || req.http.Cookie ~ "(^|;\s*)(sessionid|messages)=") {
        return (pass);
    }
    # Any other cookie (csrftoken, analytics) does not make a page private by itself:
    # when the page uses it, ormcache marks the response private and Varnish does not
    # store it (the built-in vcl_backend_response). So look the page up.
    return (hash);
}

sub vcl_backend_response {
    # Pages ormcache shares carry "Cache-Control: public, s-maxage=N" and xkey; the
    # built-in logic then stores them for s-maxage seconds, and refuses (hit-for-miss)
    # anything private, no-store, no-cache or with Set-Cookie.
    if (!beresp.http.xkey && beresp.http.Cache-Control !~ "public") {
        # Not a page ormcache can purge: do not keep it, whatever the default TTL says.
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
}

sub vcl_deliver {
    # The keys are for Varnish; clients do not need them.
    unset resp.http.xkey;
    if (obj.hits > 0) {
        set resp.http.X-Varnish-Cache = "HIT";
    } else {
        set resp.http.X-Varnish-Cache = "MISS";
    }
}
