// Start Swagger UI on /docs with the app's own OpenAPI document (see app/apidocs.py).
(() => {
  const root = document.getElementById("swagger-ui");
  SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
