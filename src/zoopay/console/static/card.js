// The console's card form on the stripe processor: Stripe Elements (Stripe.js, loaded from
// js.stripe.com as Stripe requires) takes the card in Stripe's own frame and confirms the setup
// intent with it; the form then posts the intent's id, and zoopay reads the card back from
// Stripe. Nothing of the card passes through this page's own code.
(function () {
  var form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.getAttribute("data-stripe-key"));
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var button = form.querySelector("button[type=submit]");
  var confirmed = form.elements.setup_intent;
  form.addEventListener("submit", function (event) {
    if (confirmed.value) { return; }  // confirmed by Stripe: the form goes to zoopay
    event.preventDefault();
    button.disabled = true;
    errors.textContent = "";
    stripe.confirmCardSetup(form.getAttribute("data-client-secret"), {
      payment_method: { card: card }
    }).then(function (result) {
      if (result.error) {
        errors.textContent = result.error.message || "Stripe refused the card.";
        button.disabled = false;
        return;
      }
      confirmed.value = result.setupIntent.id;
      form.submit();
    });
  });
})();
