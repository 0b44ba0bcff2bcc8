/* docsui: serves the embedded OpenAPI UI at /docs (see docsui.h). The page
 * loads /docs/ui.css, /docs/ui.js and /docs/init.js, which points the UI at
 * /openapi.json (generated from the routes). */
#include "docsui.h"

#include <string.h>

static const char page[] = "<!doctype html>\n"
                           "<html lang=\"en\">\n"
                           "<head>\n"
                           "<meta charset=\"utf-8\">\n"
                           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                           "<title>freshet API</title>\n"
                           "<link rel=\"stylesheet\" href=\"/docs/ui.css\">\n"
                           "</head>\n"
                           "<body>\n"
                           "<div id=\"swagger-ui\"></div>\n"
                           "<script src=\"/docs/ui.js\"></script>\n"
                           "<script src=\"/docs/init.js\"></script>\n"
                           "</body>\n"
                           "</html>\n";

static const char init_js[] = "window.ui = SwaggerUIBundle({\n"
                              "  url: \"/openapi.json\",\n"
                              "  dom_id: \"#swagger-ui\",\n"
                              "  deepLinking: true,\n"
                              "  docExpansion: \"list\"\n"
                              "});\n";

bool fr_api_docsui_path(const char *path)
{
    return strcmp(path, "/docs") == 0 || strcmp(path, "/docs/") == 0 || strcmp(path, "/docs/ui.js") == 0 ||
           strcmp(path, "/docs/ui.css") == 0 || strcmp(path, "/docs/init.js") == 0;
}

bool fr_api_docsui_handle(fr_http_req_t *req)
{
    const char *path = fr_http_req_path(req);
    const char *method = fr_http_req_method(req);

    if (!fr_api_docsui_path(path))
        return false;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        fr_http_add_header(req, "Allow", "GET, HEAD");
        fr_http_respond_detail(req, 405, "Method Not Allowed");
        return true;
    }
    if (strcmp(path, "/docs/ui.js") == 0) {
        fr_http_add_header(req, "Cache-Control", "public, max-age=86400");
        fr_http_respond(req, 200, "application/javascript; charset=utf-8", fr__docsui_js,
                        (size_t)(fr__docsui_js_end - fr__docsui_js));
    } else if (strcmp(path, "/docs/ui.css") == 0) {
        fr_http_add_header(req, "Cache-Control", "public, max-age=86400");
        fr_http_respond(req, 200, "text/css; charset=utf-8", fr__docsui_css,
                        (size_t)(fr__docsui_css_end - fr__docsui_css));
    } else if (strcmp(path, "/docs/init.js") == 0) {
        fr_http_respond(req, 200, "application/javascript; charset=utf-8", init_js, sizeof(init_js) - 1);
    } else {
        fr_http_respond(req, 200, "text/html; charset=utf-8", page, sizeof(page) - 1);
    }
    return true;
}
