// The authorization answer of response_mode=form_post: the browser posts
// the form to the application at once. Without JavaScript, the person
// presses its button.
"use strict";
document.getElementById("form-post").submit();
